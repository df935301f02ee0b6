"""Several conditions in one batch: ``intervene_each`` (in ``interventions.intervene``) runs a batch of
prompts once per condition, the copies side by side along the batch dimension, each block of rows under
its own condition.

The rows are condition-major: rows [i*B, (i+1)*B) are the B prompts under ``conditions[i]``. Inside
every attention layer each block runs on its own slice of the batch through the very code path that a
one-condition run takes (its own Knockouts: layers, ``zero``/``mask``, chunks, the decoding-step path),
so a row's attention sees exactly the tensors it would see alone; the linear layers, the embeddings and
the decoding loop run once for all blocks. Gate edits (``gate_randomized``) act on their own block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .knockout import Knockouts
from .session import Forward


class ConditionBlocks:
    """The attention part of a Session for condition-major blocks of ``batch`` rows (one per condition)."""

    def __init__(self, blocks: Sequence[Knockouts], batch: int):
        self.blocks = tuple(blocks)
        self.batch = batch
        self.condition = self.blocks[0].condition  # named by the nesting error of intervene()

    def _rows(self, index: int) -> slice:
        return slice(index * self.batch, (index + 1) * self.batch)

    def reset(self) -> None:
        for block in self.blocks:
            block.reset()

    def begin(self, forward: Forward) -> None:
        expected = self.batch * len(self.blocks)
        if forward.batch != expected:
            raise ValueError(
                f"the model runs a batch of {forward.batch} rows but intervene_each expects {len(self.blocks)} "
                f"conditions x {self.batch} rows = {expected}; pass the inputs through the block's expand()"
            )
        local = dataclasses.replace(forward, batch=self.batch)
        for block in self.blocks:
            block.begin(local)

    def _each(self, attention: str, module, query, key, value, attention_mask, **kwargs):
        outputs, weights = [], []
        for index, block in enumerate(self.blocks):
            rows = self._rows(index)
            mask = None if attention_mask is None else attention_mask[rows]
            output, weight = getattr(block, attention)(module, query[rows], key[rows], value[rows], mask, **kwargs)
            outputs.append(output)
            weights.append(weight)
        return torch.cat(outputs), None if weights[0] is None else torch.cat(weights)

    def fast_attention(self, module, query, key, value, attention_mask, **kwargs):
        return self._each("fast_attention", module, query, key, value, attention_mask, **kwargs)

    def reference_attention(self, module, query, key, value, attention_mask, **kwargs):
        return self._each("reference_attention", module, query, key, value, attention_mask, **kwargs)


def expand_inputs(inputs: Mapping[str, Any], copies: int) -> dict[str, Any]:
    """Every tensor of a processor output repeated ``copies`` times along dim 0, in order: rows and images
    (pixel values, image sizes, patch grids are listed row by row) follow the condition-major blocks."""
    return {
        name: torch.cat([value] * copies) if isinstance(value, torch.Tensor) and value.dim() else value
        for name, value in inputs.items()
    }
