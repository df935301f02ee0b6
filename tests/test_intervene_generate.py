"""Interventions hold for every generated token: cached generate() equals full recomputation, a
left-padded batch equals its rows run alone, and the static cache equals the dynamic one; under both
knockout semantics (``mask`` restricts SDPA's mask to the affected rows, ``zero`` edits values or, for a
single decoding query, probabilities: different code on each path)."""

from __future__ import annotations

import pytest
import torch
from tiny_cases import CONDITION_CASES, PROMPTS, TINY_CASES, case_condition, same_size_pair

from interventions import intervene, make_condition

FAMILIES = list(TINY_CASES)
NEW_TOKENS = 4


def condition_for(name, knockout):
    return case_condition(name, knockout)


@pytest.mark.parametrize("name, knockout", CONDITION_CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_cached_generate_equals_full_recomputation(pair_batch, family, name, knockout):
    tiny, inputs, layouts = pair_batch(family)
    condition = condition_for(name, knockout)
    with intervene(tiny.model, condition, layouts):
        tokens, logits = tiny.generate(inputs, NEW_TOKENS)
        # Step t recomputed from scratch: prompt + the first t generated tokens, no cache.
        recomputed = torch.stack(
            [tiny.logits(tiny.extend(inputs, tokens[:, :t]))[:, -1] for t in range(NEW_TOKENS)], dim=1
        )
    torch.testing.assert_close(logits, recomputed, rtol=0, atol=1e-4)
    if name != "baseline":
        plain = tiny.logits(tiny.extend(inputs, tokens[:, :-1]))[:, -NEW_TOKENS:]
        # image_to_generated leaves the prompt, hence the first new token's logits, as they are
        first = int(name == "image_to_generated")
        torch.testing.assert_close(plain[:, :first], recomputed[:, :first], rtol=0, atol=1e-5)
        assert (plain - recomputed)[:, first:].abs().amax(dim=-1).min() > 1e-4, "some generated token was not affected"


@pytest.mark.parametrize("name, knockout", CONDITION_CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_left_padded_batch_equals_rows_alone(pair_batch, images, family, name, knockout):
    tiny, inputs, layouts = pair_batch(family)
    condition = condition_for(name, knockout)
    with intervene(tiny.model, condition, layouts):
        batch_logits = tiny.logits(inputs)
        batch_tokens, batch_generated = tiny.generate(inputs, NEW_TOKENS)
    assert layouts[0].first != layouts[1].first, "the batch is not padded; the test proves nothing"
    for row, image in enumerate(same_size_pair(images)):
        alone = tiny.inputs([image], prompts=(PROMPTS[row],))
        (layout,) = tiny.layouts(alone)
        assert layout.key == layouts[row].key
        with intervene(tiny.model, condition, [layout]):
            logits = tiny.logits(alone)
            tokens, generated = tiny.generate(alone, NEW_TOKENS)
        first = layouts[row].first
        torch.testing.assert_close(batch_logits[row, first:], logits[0], rtol=0, atol=1e-4)
        torch.testing.assert_close(batch_generated[row], generated[0], rtol=0, atol=1e-4)
        assert torch.equal(batch_tokens[row], tokens[0])


@pytest.mark.parametrize("name, knockout", CONDITION_CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_static_cache_equals_dynamic(pair_batch, family, name, knockout):
    tiny, inputs, layouts = pair_batch(family)
    with intervene(tiny.model, condition_for(name, knockout), layouts):
        dynamic_tokens, dynamic = tiny.generate(inputs, NEW_TOKENS)
        static_tokens, static = tiny.generate(inputs, NEW_TOKENS, cache_implementation="static")
    torch.testing.assert_close(static, dynamic, rtol=0, atol=1e-4)
    assert torch.equal(static_tokens, dynamic_tokens)
