"""Flows: token roles from the layout, ``cut=SRC>DST`` edges, per-head knockouts, the paper's conditions
as flows and the literature's presets, on the tiny checkpoints of every family."""

from __future__ import annotations

import pytest
import torch
from test_conditions import LAYOUT
from tiny_cases import PROMPTS, TINY_CASES, same_size_pair

from interventions import CONDITIONS, Knockout, intervene, make_condition
from interventions.prefix import first_changed, split_column
from interventions.roles import canonical_cut, role_ranges

FAMILIES = list(TINY_CASES)
NEW_TOKENS = 4
# The paper's conditions and their flows (README "Conditions"; one image per row).
AS_FLOWS = {
    "gate_ablated": "gate>*",
    "gate_only": "image_start>text+image>text",
    "image_ablated": "image_start>text+image>text+gate>text",
    "last_image_ablated": "last_image>*",
}
# Per-head cases: a flow and a paper condition, in one head and in two of the tiny models' four (two
# key/value heads: heads 1 and 2 belong to different groups).
HEAD_CASES = [("flow", "1"), ("flow", "1+2"), ("gate_only", "0"), ("image_ablated", "3")]
HEAD_CUT = "image>question+gate>text"


def test_roles_of_a_row_with_two_images():
    # LAYOUT (tests/test_conditions.py): BOS START TEXT IMG*4 EOF GATE TEXT START IMG*3 EOF GATE TEXT, length 17
    assert role_ranges("image", LAYOUT) == ((3, 7), (11, 14))
    assert role_ranges("image_start", LAYOUT) == ((1, 3), (10, 11))
    assert role_ranges("gate", LAYOUT) == ((7, 9), (14, 16))
    assert role_ranges("last_image", LAYOUT) == ((6, 7), (13, 14))
    assert role_ranges("prefix", LAYOUT) == ((0, 1),)
    assert role_ranges("question", LAYOUT) == ()  # the last gate is followed by the last token only
    assert role_ranges("last", LAYOUT) == ((16, 17),)
    assert role_ranges("generated", LAYOUT) == ((17, None),)
    assert role_ranges("text", LAYOUT) == ((16, None),)
    assert role_ranges("*", LAYOUT) == ((0, None),)


def test_flow_knockouts_and_bad_specs():
    flow = make_condition("flow", cut=" image>last + gate>text ", layers="1", heads=[0, 2])
    assert (flow.cut, flow.layers, flow.heads) == ("image>last+gate>text", "1", "0+2")
    assert flow.to_dict() == {"name": "flow", "layers": "1", "knockout": "zero", "heads": "0+2", "cut": "image>last+gate>text"}
    assert "heads" not in make_condition("gate_only").to_dict()  # records made before heads stay the same
    assert canonical_cut("image>last,gate>text") == "image>last+gate>text"
    (last, text) = flow.knockouts(LAYOUT)
    assert (last.first_query, last.stop_query, last.keys) == (16, 17, (3, 4, 5, 6, 11, 12, 13))
    assert (text.first_query, text.stop_query, text.keys) == (16, None, (7, 8, 14, 15))
    # queries that stop before the first cut key can see it change nothing (causality)
    assert [Knockout(*args).first_changed for args in [(5, (10,), 8), (5, (10,), 11), (12, (10,)), (0, ())]] == [
        None, 10, 12, None]
    for kwargs, message in [
        ({}, "needs cut=SRC>DST"),
        ({"cut": "image"}, "write SRC>DST"),
        ({"cut": "image>answer"}, "unknown role 'answer'"),
        ({"cut": "generated>last"}, "cannot be a SRC"),
        ({"cut": "text>last"}, "cannot be a SRC"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_condition("flow", **kwargs)
    with pytest.raises(ValueError, match="takes no cut"):
        make_condition("gate_only", cut="image>last")
    with pytest.raises(ValueError, match=r"heads '5': the model has 4 heads"):
        make_condition("flow", cut="image>last", heads=5).head_indices(4)
    for name in ("image_to_question", "image_to_last", "question_to_last", "image_to_generated"):
        assert "CVPR 2025" in CONDITIONS[name].doc and "heads" in CONDITIONS[name].options


@pytest.mark.parametrize("knockout", ["zero", "mask"])
@pytest.mark.parametrize("family", FAMILIES)
def test_paper_conditions_equal_their_flows_token_for_token(pair_batch, family, knockout):
    tiny, inputs, layouts = pair_batch(family)
    named = [make_condition(name, knockout=knockout) for name in AS_FLOWS]
    flows = [make_condition("flow", cut=cut, knockout=knockout) for cut in AS_FLOWS.values()]
    tokens, logits = tiny.generate(inputs, NEW_TOKENS, named + flows, layouts)
    half = len(named) * len(layouts)
    assert torch.equal(tokens[:half], tokens[half:])
    assert torch.equal(logits[:half], logits[half:])
    _, plain = tiny.generate(inputs, NEW_TOKENS)
    for i in range(len(named)):
        assert (logits[i * 2:(i + 1) * 2] - plain).abs().max() > 1e-4, f"{named[i].name} changed nothing"


@pytest.mark.parametrize("name, heads", HEAD_CASES)
@pytest.mark.parametrize("knockout", ["zero", "mask"])
@pytest.mark.parametrize("family", FAMILIES)
def test_per_head_cuts_are_exact(pair_batch, images, family, knockout, name, heads):
    """In the chosen heads only: fast path = eager reference (1e-6), cached generation = recomputation,
    a left-padded batch = its rows alone, and the other heads' outputs are untouched."""
    tiny, inputs, layouts = pair_batch(family)
    options = {"cut": HEAD_CUT} if name == "flow" else {}
    condition = make_condition(name, knockout=knockout, heads=heads, **options)
    every_head = make_condition(name, knockout=knockout, **options)
    with torch.no_grad():
        with intervene(tiny.model, condition, layouts, reference=True):
            reference = tiny.model(**inputs, output_attentions=True)
        with intervene(tiny.model, condition, layouts):
            fast = tiny.logits(inputs)
            tokens, generated = tiny.generate(inputs, NEW_TOKENS)
            recomputed = torch.stack(
                [tiny.logits(tiny.extend(inputs, tokens[:, :t]))[:, -1] for t in range(NEW_TOKENS)], dim=1
            )
        with intervene(tiny.model, every_head, layouts):
            all_heads = tiny.logits(inputs)
        with intervene(tiny.model, "baseline", layouts, reference=True):
            base = tiny.model(**inputs, output_attentions=True)
    for layout in layouts:
        rows = slice(layout.first, None)
        torch.testing.assert_close(fast[layout.row, rows], reference.logits[layout.row, rows], rtol=0, atol=1e-6)
    torch.testing.assert_close(generated, recomputed, rtol=0, atol=1e-4)
    # layer 0 sees the same input in every run: the heads not chosen attend exactly as without the cut
    others = [h for h in range(reference.attentions[0].shape[1]) if h not in condition.head_indices(4)]
    chosen = list(condition.head_indices(4))
    for layout in layouts:
        b, rows = layout.row, slice(layout.first, None)
        assert torch.equal(reference.attentions[0][b, others, rows], base.attentions[0][b, others, rows])
        assert not torch.equal(reference.attentions[0][b, chosen, rows], base.attentions[0][b, chosen, rows])
    plain = tiny.logits(inputs)
    assert (fast - plain).abs().max() > 1e-4 and (fast - all_heads).abs().max() > 1e-4, "heads changed nothing"
    # a left-padded batch equals its rows alone
    for row, prompt in enumerate(PROMPTS):
        alone = tiny.inputs([same_size_pair(images)[row]], (prompt,))
        with torch.no_grad(), intervene(tiny.model, condition, tiny.layouts(alone)):
            own, _ = tiny.generate(alone, NEW_TOKENS)
        assert torch.equal(own[0], tokens[row])


@pytest.mark.parametrize("family", ["chameleon", "emu3", "llava"])
def test_generate_each_splits_before_a_flow_that_changes_image_rows(pair_batch, family):
    """A flow whose DST starts inside the image changes rows before the split column: its prefix is
    computed under itself, and side by side equals each condition alone (which also splits)."""
    tiny, inputs, layouts = pair_batch(family)
    early = make_condition("flow", cut="image>image+image>last", knockout="mask", heads="0+3")
    late = make_condition("flow", cut="gate>text", knockout="mask")
    column = split_column(layouts)
    assert all(first_changed(early, layout) < column <= first_changed(late, layout) for layout in layouts)
    conditions = [early, late, make_condition("image_to_generated"), make_condition("baseline")]
    tokens, logits = tiny.generate(inputs, NEW_TOKENS, conditions, layouts)
    for index, condition in enumerate(conditions):
        own_tokens, own_logits = tiny.generate(inputs, NEW_TOKENS, [condition], layouts)
        rows = slice(index * len(layouts), (index + 1) * len(layouts))
        assert torch.equal(tokens[rows], own_tokens)
        torch.testing.assert_close(logits[rows], own_logits, rtol=0, atol=1e-5)
        with intervene(tiny.model, condition, layouts):
            one_forward, _ = tiny.generate(inputs, NEW_TOKENS)
        assert torch.equal(own_tokens, one_forward)
