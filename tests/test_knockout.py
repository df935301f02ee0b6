"""Attention knockout on the tiny checkpoints of every family: the eager reference cuts exactly the
published (Q, K) edges, and the fast SDPA path computes the same logits."""

from __future__ import annotations

import pytest
import torch
from tiny_cases import PROMPTS, TINY_CASES, load, same_size_pair

from interventions import CONDITIONS, intervene, make_condition
from interventions.session import language_model, session_of

FAMILIES = list(TINY_CASES)
KNOCKOUT_CONDITIONS = [name for name in CONDITIONS if name not in ("baseline", "gate_randomized")]
# Fast path vs eager reference on float32 logits: the largest difference measured is 3e-7.
FAST_TOLERANCE = 1e-6


def assert_all(condition: torch.Tensor) -> None:
    """``condition.all()``, refusing the vacuous truth of an empty selection."""
    assert condition.numel() > 0, "empty selection: the check would pass whatever the engine does"
    assert condition.all()


def expected_cut(condition, layout, length: int) -> torch.Tensor:
    """(query, key) edges the condition cuts in one row, written out from docs/protocol.md §3 (not from the
    engine), restricted to edges that causal attention has at all."""
    cut = torch.zeros(length, length, dtype=torch.bool)
    for index, span in enumerate(layout.spans):
        after = span.gate[-1] + 1
        image_keys = list(span.start) + list(span.image)
        if condition.name == "gate_ablated":
            cut[:, list(span.gate)] = True
        elif condition.name == "gate_only":
            cut[after:, image_keys] = True
        elif condition.name == "image_ablated":
            cut[after:, image_keys + list(span.gate)] = True
        elif condition.name == "last_image_ablated":
            cut[:, span.gate[0] - 1] = True
        elif condition.name == "random_image_ablated":
            keys = condition.knockouts(layout)[index].keys
            assert len(set(keys)) == condition.k and set(keys) <= set(span.image)
            cut[:, list(keys)] = True
    return cut & torch.ones(length, length, dtype=torch.bool).tril()


def assert_close_on_rows(actual, expected, layouts, atol):
    """Logits agree at every non-padding position (padding rows read nothing and may hold anything)."""
    for layout in layouts:
        valid = slice(layout.first, None)
        torch.testing.assert_close(actual[layout.row, valid], expected[layout.row, valid], rtol=0, atol=atol)


def run(tiny, condition, inputs, layouts, **kwargs):
    with torch.no_grad(), intervene(tiny.model, condition, layouts, reference=kwargs.pop("reference", False)):
        return tiny.model(**inputs, **kwargs)


TWO_IMAGE_PROMPTS = ("{image}left {image}right : which is red ?", "which is red , {image}or {image}?")


@pytest.fixture(scope="module")
def batch(tiny_dir, images):
    """(family, images per row, padded) -> (tiny, inputs, layouts) for a batch of two rows: left-padded
    (different prompts), or of equal length (one prompt, two images), which SDPA runs without a mask."""
    cache = {}

    def get(family, per_row=1, padded=True):
        key = family, per_row, padded
        if key not in cache:
            tiny = load(tiny_dir, family)
            pair = same_size_pair(images)
            prompts = PROMPTS if per_row == 1 else TWO_IMAGE_PROMPTS
            prompts = prompts if padded else prompts[:1] * 2
            inputs = tiny.inputs(pair if per_row == 1 else [pair, pair[::-1]], prompts)
            layouts = tiny.layouts(inputs)
            assert all(len(layout.spans) == per_row for layout in layouts)
            assert bool(inputs["attention_mask"].all()) != padded
            cache[key] = tiny, inputs, layouts
        return cache[key]

    return get


@pytest.mark.parametrize("per_row", [1, 2], ids=["one_image", "two_images"])
@pytest.mark.parametrize("knockout", ["zero", "mask"])
@pytest.mark.parametrize("name", KNOCKOUT_CONDITIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_reference_cuts_exactly_the_condition_edges(batch, family, name, knockout, per_row):
    tiny, inputs, layouts = batch(family, per_row)
    condition = make_condition(name, knockout=knockout, k=3)
    base = run(tiny, make_condition("baseline"), inputs, layouts, reference=True, output_attentions=True)
    out = run(tiny, condition, inputs, layouts, reference=True, output_attentions=True)
    length = inputs["input_ids"].shape[1]
    for layout in layouts:
        b, rows = layout.row, slice(layout.first, None)
        cut = expected_cut(condition, layout, length)[rows]
        # Layer 0 sees identical inputs in both runs, so every difference is the knockout itself.
        probs, base_probs = out.attentions[0][b, :, rows], base.attentions[0][b, :, rows]
        assert_all(base_probs[:, cut] > 0)  # the cut edges carried attention before the knockout
        assert_all(probs[:, cut] == 0)
        affected = cut.any(dim=-1)
        if knockout == "zero":
            assert torch.equal(probs[:, ~cut], base_probs[:, ~cut])
            assert_all(probs[:, affected].sum(-1) < 1 - 1e-6)  # zero must not renormalise
        else:
            assert torch.equal(probs[:, ~affected], base_probs[:, ~affected])
            # Rows renormalise over the keys they keep; a row left with no key reads nothing.
            visible = torch.ones(length, length, dtype=torch.bool).tril()[rows] & (torch.arange(length) >= layout.first)
            empty = (cut | ~visible).all(dim=-1)
            renormalised = affected & ~empty
            kept = base_probs[:, renormalised] * ~cut[renormalised]
            torch.testing.assert_close(probs[:, renormalised], kept / kept.sum(-1, keepdim=True), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(probs[:, renormalised].sum(-1), torch.ones_like(probs[:, renormalised, 0]))
            assert (probs[:, empty] == 0).all()
        # Logits before the first cut query are untouched, bit for bit; later ones move.
        first = layout.first + int(affected.nonzero()[0])
        assert torch.equal(out.logits[b, layout.first:first], base.logits[b, layout.first:first])
        assert (out.logits[b, first:] - base.logits[b, first:]).abs().max() > 1e-4


@pytest.mark.parametrize("per_row", [1, 2], ids=["one_image", "two_images"])
@pytest.mark.parametrize("knockout", ["zero", "mask"])
@pytest.mark.parametrize("name", list(CONDITIONS))
@pytest.mark.parametrize("family", FAMILIES)
def test_fast_path_equals_reference(batch, family, name, knockout, per_row):
    tiny, inputs, layouts = batch(family, per_row)
    condition = make_condition(name, knockout=knockout, k=3)
    fast = run(tiny, condition, inputs, layouts).logits
    reference = run(tiny, condition, inputs, layouts, reference=True).logits
    assert_close_on_rows(fast, reference, layouts, atol=FAST_TOLERANCE)
    if name != "baseline":
        plain = tiny.logits(inputs)
        assert (fast - plain).abs().max() > 1e-3, "the condition changed nothing; the comparison proves nothing"


@pytest.mark.parametrize("per_row", [1, 2], ids=["one_image", "two_images"])
@pytest.mark.parametrize("name", KNOCKOUT_CONDITIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_mask_without_padding_leaves_cut_keys_out(batch, family, name, per_row):
    """Rows of equal length run SDPA's causal kernel (no mask): ``mask`` leaves the cut keys out of causal
    attention instead of masking them (another code path than the padded batch's); same logits as the
    reference, with rows whose cut keys differ."""
    tiny, inputs, layouts = batch(family, per_row, padded=False)
    condition = make_condition(name, knockout="mask", k=3)
    with torch.no_grad(), intervene(tiny.model, condition, layouts):
        fast = tiny.model(**inputs).logits
        (chunks,) = session_of(language_model(tiny.model)).knockout.on.built.values()
    # conditions whose queries are "all" (docs/protocol.md §3) cut from the first row on; the others
    # cut only the rows after the gate, a few rows that keep their explicit mask
    queries_all = name in ("gate_ablated", "last_image_ablated", "random_image_ablated")
    assert any(chunk.kept is not None for chunk in chunks) == queries_all
    reference = run(tiny, condition, inputs, layouts, reference=True).logits
    assert_close_on_rows(fast, reference, layouts, atol=FAST_TOLERANCE)
    assert (fast - tiny.logits(inputs)).abs().max() > 1e-3, "the condition changed nothing; the comparison proves nothing"


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_selection(batch, family):
    tiny, inputs, layouts = batch(family)
    base = run(tiny, make_condition("baseline"), inputs, layouts, reference=True, output_attentions=True)
    every = run(tiny, make_condition("gate_ablated"), inputs, layouts).logits
    last = make_condition("gate_ablated", layers="1")
    out = run(tiny, last, inputs, layouts, reference=True, output_attentions=True)
    gate = layouts[0].spans[0].gate
    assert torch.equal(out.attentions[0], base.attentions[0]), "layer 0 was not selected"
    # attentions: (batch, heads, queries, keys); every query from the last gate token on reads the gate
    assert_all(out.attentions[1][0, :, gate[-1]:, list(gate)] == 0)
    assert_all(base.attentions[1][0, :, gate[-1]:, list(gate)] > 0)
    fast = run(tiny, last, inputs, layouts).logits
    assert_close_on_rows(fast, out.logits, layouts, atol=FAST_TOLERANCE)
    assert torch.equal(fast, run(tiny, make_condition("gate_ablated", layers="last:1"), inputs, layouts).logits)
    assert torch.equal(fast, run(tiny, make_condition("gate_ablated", layers=[1]), inputs, layouts).logits)
    assert (fast - every).abs().max() > 1e-4 and (fast - base.logits).abs().max() > 1e-4
    with pytest.raises(ValueError, match="has 2 layers"):
        run(tiny, make_condition("gate_ablated", layers="1-5"), inputs, layouts)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16(tiny_dir, images, family):
    tiny = load(tiny_dir, family, torch.bfloat16)
    inputs = tiny.inputs(same_size_pair(images))
    layouts = tiny.layouts(inputs)
    condition = make_condition("gate_only")
    fast = run(tiny, condition, inputs, layouts).logits
    out = run(tiny, condition, inputs, layouts, reference=True, output_attentions=True)
    assert fast.dtype == torch.bfloat16
    cut = expected_cut(condition, layouts[0], inputs["input_ids"].shape[1])
    assert_all(out.attentions[0][0][:, cut] == 0)
    assert_all(out.attentions[1][0][:, cut] == 0)
    assert_close_on_rows(fast.float(), out.logits.float(), layouts, atol=3e-2)
    assert (fast.float() - tiny.logits(inputs).float()).abs().max() > 0.1
    with intervene(tiny.model, condition, layouts):
        tokens, _ = tiny.generate(inputs, new_tokens=3)
    assert tokens.shape == (2, 3)


@pytest.mark.parametrize("family", ["chameleon", "emu3"])
def test_model_restored_exactly(batch, family):
    tiny, inputs, layouts = batch(family)
    decoder = language_model(tiny.model)
    implementation = decoder.config._attn_implementation
    hooks = [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in tiny.model.modules()]
    before = tiny.logits(inputs)
    with pytest.raises(KeyboardInterrupt), intervene(tiny.model, make_condition("gate_randomized"), layouts):
        assert decoder.config._attn_implementation == "narrowgate"
        raise KeyboardInterrupt
    for reference in (False, True):
        with intervene(tiny.model, "image_ablated", layouts, reference=reference):
            with pytest.raises(RuntimeError, match="cannot be nested"), intervene(tiny.model, "gate_ablated", layouts):
                pass
            tiny.logits(inputs)
    assert decoder.config._attn_implementation == implementation
    assert [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in tiny.model.modules()] == hooks
    assert session_of(language_model(tiny.model)) is None
    assert torch.equal(tiny.logits(inputs), before)


def test_mismatched_inputs_are_errors(batch):
    tiny, inputs, layouts = batch("chameleon")
    with pytest.raises(ValueError, match="batch of 2 rows but the intervention has 1 layouts"):
        run(tiny, make_condition("gate_ablated"), inputs, layouts[:1])
    with pytest.raises(ValueError, match=r"layouts\[0\] describes batch row 1; pass one layout per row in row order"):
        run(tiny, make_condition("gate_ablated"), inputs, layouts[::-1])
    short = {key: value[:, :-3] if key in ("input_ids", "attention_mask") else value for key, value in inputs.items()}
    with pytest.raises(ValueError, match="compute the layouts from the very input_ids"):
        run(tiny, make_condition("gate_ablated"), short, layouts)
    text_only = tiny.processor(text=["what color is it ?"] * 2, return_tensors="pt")
    with pytest.raises(ValueError, match="needs an image in every row"), intervene(tiny.model, "gate_only", tiny.layouts(text_only)):
        pass
    with pytest.raises(ValueError, match="k=99 but image 0 of row 0 has only 64"):
        run(tiny, make_condition("random_image_ablated", k=99), inputs, layouts)
    with pytest.raises(RuntimeError, match="only run inside"):
        language_model(tiny.model).set_attn_implementation({"": "narrowgate"})
        try:
            tiny.logits(inputs)
        finally:
            language_model(tiny.model).set_attn_implementation({"": "sdpa"})
