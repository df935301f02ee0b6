"""Conditions side by side (``intervene_each``, the grid's batched pass) give every row exactly what its
condition gives it alone: same tokens, same logits, for every family and condition, ``zero`` and
``mask``, on a left-padded batch of 2."""

from __future__ import annotations

import pytest
import torch
from tiny_cases import CONDITION_CASES, TINY_CASES, load, same_size_pair

from interventions import intervene, intervene_each, make_condition

NEW_TOKENS = 4
# every condition and semantics, a second random seed, and a layer subset next to the all-layer rows
CONDITIONS = [make_condition(name, knockout=knockout, k=3) for name, knockout in CONDITION_CASES] + [
    make_condition("random_image_ablated", k=3, seed=1),
    make_condition("gate_ablated", layers="last:1", knockout="mask"),
    make_condition("gate_randomized", seed=1, layers="0"),
]


@pytest.mark.parametrize("family", TINY_CASES)
def test_conditions_side_by_side_equal_each_alone(tiny_dir, images, family):
    tiny = load(tiny_dir, family)
    inputs = tiny.inputs(same_size_pair(images))
    layouts = tiny.layouts(inputs)
    assert layouts[0].first != layouts[1].first, "the batch is not padded; the test proves nothing"
    batch = len(layouts)
    with intervene_each(tiny.model, CONDITIONS, layouts) as expand:
        together, together_logits = tiny.generate(expand(inputs), NEW_TOKENS)
    distinct = set()
    for index, condition in enumerate(CONDITIONS):
        with intervene(tiny.model, condition, layouts):
            alone, alone_logits = tiny.generate(inputs, NEW_TOKENS)
        rows = slice(index * batch, (index + 1) * batch)
        assert torch.equal(together[rows], alone), condition
        torch.testing.assert_close(together_logits[rows], alone_logits, rtol=0, atol=1e-5, msg=str(condition))
        distinct.add(round(alone_logits.amax(dim=-1).sum().item(), 4))
    assert len(distinct) > len(CONDITIONS) // 2, "the conditions barely differ; the test proves little"


def test_wrong_batch_is_refused(tiny_dir, images):
    tiny = load(tiny_dir, "chameleon")
    inputs = tiny.inputs(same_size_pair(images))
    with intervene_each(tiny.model, ["baseline", "gate_ablated"], tiny.layouts(inputs)):
        with pytest.raises(ValueError, match=r"2 conditions x 2 rows = 4; pass the inputs through the block's expand"):
            tiny.logits(inputs)
