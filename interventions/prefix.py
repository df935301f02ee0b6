"""Shared-prefix prefill: a batch of prompts generated under several conditions computes the rows that
no condition changes once, not once per condition (``generate_each``).

A condition leaves every query row before the first one it changes (``first_changed``, from its
knockouts and gate edits; in every layer, whatever its ``layers``) as the model computes it without
intervention. ``generate_each`` prefills the prompt in two forwards split at ``split_column(layouts)``:
the prefix [0, L) once for the batch's B prompts for all the conditions that change no row before L
(run as the baseline: the same arithmetic), and once for each other condition under that condition
(random_image_ablated cuts inside the image); the prefix caches are laid out condition-major (C x B
rows, as ``intervene_each`` expects) and ``model.generate`` continues with the rest of the prompt and
the decoding, the conditions side by side.

Exactness. A prompt computed in two forwards agrees with one forward only to ~6e-7 in logits, so the
greedy tokens could differ on a near-tie. Hence L does not depend on the conditions: it is the column
of the batch's earliest last image token (the first row that last_image_ablated changes; every other
condition acting at the gate changes later rows), and every generation through ``generate_each``, one
condition alone (the grid's ``--sequential``) as well as several side by side, splits there. Each
prefix block is computed on the same B rows from the same inputs in both cases, so the caches are
equal bit for bit, and the rest differs only as any rows side by side do (``intervene_each``). The
alternative, detecting near-ties and recomputing those rows, needs a bound on that difference that
holds for every dtype and device (bfloat16 logits of magnitude 10 are 0.06 apart), which no test
can establish.

Images. transformers passes pixel values with the first forward only, and L cuts images (the last
image token comes after it, and with left padding the rows' images end at different columns). The
token-image families (Chameleon, Emu3) get each image's VQ token ids substituted into ``input_ids``
(``image_tokens``: integer ids, the very embeddings the model looks up itself), after which any
column can split. The embedding families (continuous vision features) are not split: their
conditions run side by side on the whole prompt as ``intervene_each`` runs them, with no sharing.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .conditions import Condition, make_condition
from .intervene import intervene, intervene_each
from .layouts import Layout, batch_layouts

BASELINE = make_condition("baseline")


def first_changed(condition: Condition, layout: Layout) -> int:
    """The first KV position whose query row ``condition`` changes in the row of ``layout`` (its length
    when none): each knockout's ``first_changed``, a gate edit none before the gate."""
    rows = [cut.first_changed for cut in condition.knockouts(layout) if cut.first_changed is not None]
    if condition.edits_gate:
        rows += [span.gate[0] for span in layout.spans]
    return min(rows, default=layout.length)


def split_column(layouts: Sequence[Layout]) -> int | None:
    """Where every generation of this batch splits its prefill, whatever the conditions: the column of
    the earliest last token of a row's first image (None when a row has no image)."""
    if not layouts or not all(layout.spans for layout in layouts):
        return None
    column = min(layout.spans[0].gate[0] - 1 for layout in layouts)
    return column if column > 0 else None


def image_tokens(model: torch.nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """``input_ids`` with every image placeholder replaced by the image's VQ token id (in the order the
    model scatters them) and ``attention_mask``: a text-only input that any column can split. The
    input as it is when it holds no image input; None for a model that embeds images as continuous
    features (no token ids to substitute)."""
    images = set(inputs) - {"input_ids", "attention_mask"}
    if not images:
        return dict(inputs)
    base = model.base_model
    encode = getattr(base, "get_image_tokens", None)
    if encode is None or not images <= set(inspect.signature(encode).parameters):
        return None
    tokens = encode(**{name: inputs[name] for name in images}).flatten()
    ids = inputs["input_ids"]
    placeholders = ids == base.vocabulary_mapping.image_token_id
    if int(placeholders.sum()) != tokens.numel():
        raise ValueError(
            f"the prompts hold {int(placeholders.sum())} image placeholders but the images make {tokens.numel()} "
            "tokens; pass the processor's output unchanged"
        )
    return {"input_ids": ids.masked_scatter(placeholders, tokens.to(ids.dtype)), "attention_mask": inputs["attention_mask"]}


def prefills(conditions: Sequence[Condition], layouts: Sequence[Layout]) -> list[Condition] | None:
    """The condition each block's prefix is computed under: the baseline (one computation shared by all
    such blocks) for a condition that changes no row before the split, else the condition itself;
    None when the batch does not split (a row without an image)."""
    column = split_column(layouts)
    if column is None:
        return None
    return [BASELINE if all(first_changed(c, layout) >= column for layout in layouts) else c for c in conditions]


@torch.no_grad()
def _prefill(model, condition: Condition, layouts, inputs, column: int, reference) -> list:
    """The keys and values of positions [0, column) of the batch under ``condition``, one [keys, values]
    per layer, computed with the positions and mask that ``generate`` gives the same rows (position ids
    from the attention mask; no mask when nothing is padded)."""
    mask = inputs["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, :column]
    cache = DynamicCache(config=model.config)
    with intervene(model, condition, layouts, reference=reference, prefill=column):
        model(
            input_ids=inputs["input_ids"][:, :column],
            attention_mask=None if bool(mask.all()) else mask[:, :column],
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return [[layer.keys, layer.values] for layer in cache.layers]


class _Reserved(DynamicLayer):
    """A cache layer that writes each forward's keys and values into room kept after them instead of
    concatenating. ``DynamicLayer.update`` copies the whole cache at every layer and decoding step: with
    conditions side by side (C x B rows of a long prompt) that copying was most of the generation's time
    on CPU. Here a step writes its own positions; the room doubles when it runs out. ``keys``/``values``
    are views of the filled positions (so ``crop`` works)."""

    def __init__(self, parts: list[torch.Tensor], size: int):
        super().__init__()
        self.lazy_initialization(parts[0], parts[1])
        self.buffers = parts
        self.keys, self.values = (part[..., :size, :] for part in parts)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        start = self.keys.shape[-2]
        stop = start + key_states.shape[-2]
        if stop > self.buffers[0].shape[-2]:
            self.buffers = [_room(buffer[..., :start, :], max(stop, 2 * start)) for buffer in self.buffers]
        for buffer, new in zip(self.buffers, (key_states, value_states)):
            buffer[..., start:stop, :] = new
        self.keys, self.values = (buffer[..., :stop, :] for buffer in self.buffers)
        return self.keys, self.values


def _room(part: torch.Tensor, size: int) -> torch.Tensor:
    """``part`` (B, heads, n, dim) at the start of a new (B, heads, size, dim) tensor."""
    grown = part.new_empty(*part.shape[:-2], size, part.shape[-1])
    grown[..., : part.shape[-2], :] = part
    return grown


def _stack(blocks: list[list], config, room: int) -> DynamicCache:
    """One cache holding the blocks' rows in order (a block may repeat, condition-major), with ``room``
    positions reserved after the prefix (``_Reserved``). Each layer's prefix tensors are released once
    copied, so stacking holds one layer beyond the stacked cache."""
    cache = DynamicCache(config=config)
    for index in range(len(cache.layers)):
        size = blocks[0][index][0].shape[-2]
        parts = []
        for part in (0, 1):
            rows = [block[index][part] for block in blocks]
            stacked = rows[0].new_empty(len(rows) * rows[0].shape[0], *rows[0].shape[1:-2], size + room, rows[0].shape[-1])
            for block, row in enumerate(rows):
                stacked[block * row.shape[0] : (block + 1) * row.shape[0], ..., :size, :] = row
            parts.append(stacked)
        cache.layers[index] = _Reserved(parts, size)
        for block in blocks:
            block[index] = None
    return cache


def generate_each(
    model: torch.nn.Module,
    conditions: Sequence[Condition | str],
    layouts: Sequence[Layout],
    inputs: Mapping[str, Any],
    *,
    reference: bool | None = None,
    **options: Any,
):
    """``model.generate(**inputs, **options)`` under each of ``conditions``, side by side: what
    ``intervene_each`` gives (rows [i*B, (i+1)*B): the B prompts under ``conditions[i]``), with the
    prefix that the conditions share prefilled once (module docstring; ``prefills`` says under which
    condition each block's prefix is computed). One condition alone runs the same split, so the
    outputs agree with it token for token. Unsplit, as ``intervene_each``: embedding families, a
    row without an image, a cache passed in or a static cache asked for."""
    conditions = [make_condition(c) if isinstance(c, str) else c for c in conditions]
    layouts = batch_layouts(layouts)
    plan = prefills(conditions, layouts)
    text = image_tokens(model, inputs) if plan and not {"cache", "cache_implementation"} & set(options) else None
    if text is None:
        with intervene_each(model, conditions, layouts, reference=reference) as expand:
            return model.generate(**expand(inputs), **options)
    column = split_column(layouts)
    computed = {prefix: _prefill(model, prefix, layouts, text, column, reference) for prefix in dict.fromkeys(plan)}
    room = text["input_ids"].shape[1] - column + options.get("max_new_tokens", 0)
    cache = _stack([computed[prefix] for prefix in plan], model.config, room)
    with intervene_each(model, conditions, layouts, reference=reference) as expand:
        return model.generate(**expand(text), cache=cache, **options)
