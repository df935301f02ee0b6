"""Training under a condition: the engine's knockout definitions applied to packed training rows.

``interventions.intervene`` needs the model to build its own mask from a 2D ``attention_mask``; a
packed row brings its own 4D mask (segments that must not read each other), so the trainer applies the
same ``Condition.knockouts`` here, with the engine's semantics (``zero``: a cut key's post-softmax
probability is 0, rows not renormalised, i.e. its value vector is removed from the rows that may not
read it; ``mask``: its score is -inf before the softmax), in every layer. Every packed row shares one prefix (bos, start-of-image, image, gate), and
every prompt segment comes after it, so the prefix's layout holds for every row: "queries after the
gate" are exactly the segments' tokens.

Planting a gate takes ``mask`` semantics and an attention loss (``ToyRecipe.knockout``,
``attention_loss``). Under ``zero`` a cut key still sits in the softmax denominator, so the share left to
the kept keys depends on the image tokens: a toy trained under ``gate_only`` with ``zero`` learns to
read the image through that leak instead of the gate (measured: ``image_ablated`` as good as
``gate_only``). ``mask`` has no leak; but a model that never reads the image tokens in training reads
them with untrained attention when run without the knockout, so the attention loss penalises the
probability the cut edges would take: the model learns not to attend to them at all, and then runs
the same with or without the knockout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import pairwise

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from interventions import Knockout, family_spec, find_layouts, make_condition
from interventions.session import language_model

from .recipe import FAMILY

TRAINING_ATTENTION = "narrowgate_toy_training"


def prefix_knockouts(condition: str, prefix: Sequence[int], tokenizer) -> tuple[Knockout, ...]:
    """The knockouts of ``condition`` (its default options) for rows that start with ``prefix``."""
    (layout,) = find_layouts(torch.tensor([list(prefix)]), None, family_spec(FAMILY).token_ids(tokenizer))
    return make_condition(condition).knockouts(layout)


def _attention(
    knockouts: tuple[Knockout, ...], semantics: str, cut_mass: list | None, module, query, key, value, attention_mask, **kwargs
):
    """Per block of query rows, the keys those rows may not read cut: under ``zero`` on the SDPA path
    (their values set to 0), or eagerly when the semantics is ``mask`` or ``cut_mass`` collects the
    mean probability the rows would put on the cut keys without the cut (what the attention loss
    drives to 0)."""
    length = query.shape[2]
    bounds = sorted({0, length, *(ko.first_query for ko in knockouts if 0 < ko.first_query < length)})
    outputs = []
    for lo, hi in pairwise(bounds):
        cut = sorted({k for ko in knockouts if ko.first_query <= lo for k in ko.keys})
        mask = None if attention_mask is None else attention_mask[:, :, lo:hi]
        rows = query[:, :, lo:hi]
        if cut and (semantics == "mask" or cut_mass is not None):
            outputs.append(_eager(module, rows, key, value, mask, cut, semantics, cut_mass, **kwargs))
            continue
        values = value.index_fill(2, torch.tensor(cut, device=value.device), 0.0) if cut else value
        outputs.append(sdpa_attention_forward(module, rows, key, values, mask, **kwargs)[0])
    return torch.cat(outputs, dim=1), None


def _eager(module, query, key, value, mask, cut, semantics, cut_mass, dropout=0.0, scaling=None, **kwargs):
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    if mask is not None:
        scores = scores + mask
    keys = torch.tensor(cut, device=scores.device)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if cut_mass is not None:
        cut_mass.append(probs.index_select(-1, keys).sum(dim=-1).mean())
    if semantics == "mask":
        probs = torch.softmax(scores.index_fill(-1, keys, float("-inf")), dim=-1, dtype=torch.float32).to(query.dtype)
    else:
        probs = probs.index_fill(-1, keys, 0.0)
    return torch.matmul(probs, value).transpose(1, 2).contiguous()


@contextmanager
def training_under(
    model: torch.nn.Module, knockouts: tuple[Knockout, ...], semantics: str = "zero", collect: bool = False
) -> Iterator[list]:
    """Run the language model's attention with ``knockouts`` cut (nothing changes when there are none),
    with ``zero`` or ``mask`` semantics. Yields a list that, when ``collect``, receives each layer's
    mean probability on the cut keys (as the softmax would give them without the cut)."""
    cut_mass: list = []
    if not knockouts:
        yield cut_mass
        return
    decoder = language_model(model)
    saved = decoder.config._attn_implementation
    AttentionInterface.register(TRAINING_ATTENTION, partial(_attention, knockouts, semantics, cut_mass if collect else None))
    decoder.set_attn_implementation({"": TRAINING_ATTENTION})
    try:
        yield cut_mass
    finally:
        decoder.set_attn_implementation({"": saved})
