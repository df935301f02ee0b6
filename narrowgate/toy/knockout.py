"""Training under a condition: the engine's knockout definitions applied to packed training rows.

``interventions.intervene`` needs the model to build its own mask from a 2D ``attention_mask``; a
packed row brings its own 4D mask (segments that must not read each other), so the trainer applies the
same ``Condition.knockouts`` here, with the engine's ``zero`` semantics (a cut key's post-softmax
probability is 0, rows not renormalised, i.e. its value vector is removed from the rows that may not
read it), in every layer. Every packed row shares one prefix (bos, start-of-image, image, gate), and
every prompt segment comes after it, so the prefix's layout holds for every row: "queries after the
gate" are exactly the segments' tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import pairwise

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from interventions import Knockout, family_spec, find_layouts, make_condition
from interventions.session import language_model

from .recipe import FAMILY

TRAINING_ATTENTION = "narrowgate_toy_training"


def prefix_knockouts(condition: str, prefix: Sequence[int], tokenizer) -> tuple[Knockout, ...]:
    """The knockouts of ``condition`` (default options, zero semantics) for rows that start with ``prefix``."""
    (layout,) = find_layouts(torch.tensor([list(prefix)]), None, family_spec(FAMILY).token_ids(tokenizer))
    return make_condition(condition).knockouts(layout)


def _attention(knockouts: tuple[Knockout, ...], module, query, key, value, attention_mask, **kwargs):
    """SDPA per block of query rows, with the values of the keys those rows may not read set to 0."""
    length = query.shape[2]
    bounds = sorted({0, length, *(ko.first_query for ko in knockouts if 0 < ko.first_query < length)})
    outputs = []
    for lo, hi in pairwise(bounds):
        cut = sorted({k for ko in knockouts if ko.first_query <= lo for k in ko.keys})
        values = value.index_fill(2, torch.tensor(cut, device=value.device), 0.0) if cut else value
        mask = None if attention_mask is None else attention_mask[:, :, lo:hi]
        outputs.append(sdpa_attention_forward(module, query[:, :, lo:hi], key, values, mask, **kwargs)[0])
    return torch.cat(outputs, dim=1), None


@contextmanager
def training_under(model: torch.nn.Module, knockouts: tuple[Knockout, ...]) -> Iterator[None]:
    """Run the language model's attention with ``knockouts`` cut (nothing changes when there are none)."""
    if not knockouts:
        yield
        return
    config = language_model(model).config
    saved = config._attn_implementation_internal
    AttentionInterface.register(TRAINING_ATTENTION, partial(_attention, knockouts))
    config._attn_implementation_internal = TRAINING_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation_internal = saved
