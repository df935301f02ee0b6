"""Conditions: the registry, option checking, layer specs and per-example random choices."""

from __future__ import annotations

import json

import pytest
import torch

from interventions import CONDITIONS, FamilyIds, Knockout, find_layouts, make_condition
from interventions.conditions import resolve_layers

PAD, BOS, TEXT, START, IMG, GATE, EOF_ = 0, 1, 2, 3, 4, 6, 7
EMU3_LIKE = FamilyIds("emu3_like", image=(IMG,), start=(START,), gate=(EOF_, GATE))

# Two Emu3-like images: start + header, image run, two gate tokens.
ROW = [BOS, START, TEXT, IMG, IMG, IMG, IMG, EOF_, GATE, TEXT, START, IMG, IMG, IMG, EOF_, GATE, TEXT]
(LAYOUT,) = find_layouts(torch.tensor([ROW]), None, EMU3_LIKE)


def test_registry_is_documented():
    assert list(CONDITIONS) == [
        "baseline",
        "gate_ablated",
        "gate_only",
        "image_ablated",
        "last_image_ablated",
        "random_image_ablated",
        "gate_randomized",
        "flow",
        "image_to_question",
        "image_to_last",
        "question_to_last",
        "image_to_generated",
    ]
    for definition in CONDITIONS.values():
        assert len(definition.doc) > 40


def test_knockouts_follow_the_protocol():
    assert make_condition("baseline").knockouts(LAYOUT) == ()
    assert make_condition("gate_ablated").knockouts(LAYOUT) == (Knockout(0, (7, 8)), Knockout(0, (14, 15)))
    assert make_condition("gate_only").knockouts(LAYOUT) == (
        Knockout(9, (1, 2, 3, 4, 5, 6)),
        Knockout(16, (10, 11, 12, 13)),
    )
    assert make_condition("image_ablated").knockouts(LAYOUT) == (
        Knockout(9, (1, 2, 3, 4, 5, 6, 7, 8)),
        Knockout(16, (10, 11, 12, 13, 14, 15)),
    )
    assert make_condition("last_image_ablated").knockouts(LAYOUT) == (Knockout(0, (6,)), Knockout(0, (13,)))
    assert make_condition("gate_randomized").knockouts(LAYOUT) == ()
    assert make_condition("gate_randomized").edits_gate and not make_condition("gate_only").edits_gate


def test_random_image_tokens_are_seeded_per_example():
    condition = make_condition("random_image_ablated", k=2)
    chosen = condition.knockouts(LAYOUT)
    for knockout, span in zip(chosen, LAYOUT.spans):
        assert knockout.first_query == 0 and len(set(knockout.keys)) == 2 and set(knockout.keys) <= set(span.image)
    # Same example elsewhere in another batch, left-padded: the same image tokens.
    other = find_layouts(torch.tensor([[BOS] * 20, [PAD] * 3 + ROW]), torch.tensor([[1] * 20, [0] * 3 + [1] * 17]), EMU3_LIKE)[1]
    shifted = condition.knockouts(other)
    assert [tuple(k - 3 for k in ko.keys) for ko in shifted] == [ko.keys for ko in chosen]
    draws = {make_condition("random_image_ablated", k=2, seed=seed).knockouts(LAYOUT)[0].keys for seed in range(20)}
    assert len(draws) > 1, "the seed does not change the draw"
    with pytest.raises(ValueError, match="k=4 but image 1 of row 0 has only 3 image tokens"):
        make_condition("random_image_ablated", k=4).knockouts(LAYOUT)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown condition 'nosuch'; valid conditions: baseline, gate_ablated"):
        make_condition("nosuch")
    with pytest.raises(ValueError, match="unknown option.* window .*valid options: layers, knockout, k, seed"):
        make_condition("gate_only", window=3)
    with pytest.raises(ValueError, match="unknown knockout 'soft'; valid: zero, mask"):
        make_condition("gate_only", knockout="soft")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        make_condition("random_image_ablated", k=0)


def test_options_a_condition_does_not_read_are_reset():
    assert make_condition("baseline", knockout="mask", layers="1") == make_condition("baseline")
    assert make_condition("gate_only", k=3) == make_condition("gate_only")
    condition = make_condition("random_image_ablated", layers=[3, 1], knockout="mask", k=3, seed=7)
    assert condition.to_dict() == {"name": "random_image_ablated", "layers": "1+3", "knockout": "mask", "k": 3, "seed": 7}
    assert json.loads(json.dumps(make_condition("gate_randomized").to_dict())) == {"name": "gate_randomized", "layers": None, "seed": 0}


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, tuple(range(32))),
        ("all", tuple(range(32))),
        ("16-31", tuple(range(16, 32))),
        ("3,5,7", (3, 5, 7)),
        ("3+5+7", (3, 5, 7)),
        ("0-3+8", (0, 1, 2, 3, 8)),
        ("3, 5-6", (3, 5, 6)),
        ([5, 3], (3, 5)),
        (4, (4,)),
        ("last:8", tuple(range(24, 32))),
        ("last:0", ()),
    ],
)
def test_layer_specs(spec, expected):
    assert make_condition("gate_ablated", layers=spec).layer_indices(32) == expected


@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("3,5,7", "3+5+7"),
        ("7+5+3", "3+5+7"),
        ("0-3,8", "0-3+8"),
        ("3, 5-6", "3+5-6"),
        ([4, 3, 5, 9], "3-5+9"),
        (5, "5"),
        ("16-31", "16-31"),
        ("last:8", "last:8"),
    ],
)
def test_layer_lists_survive_model_args(spec, canonical):
    """lmms-eval splits --model_args on commas: the canonical form (the one recorded) must replay."""
    from lmms_eval.utils import simple_parse_args_string

    condition = make_condition("gate_ablated", layers=spec)
    assert condition.layers == canonical
    replayed = simple_parse_args_string(f"pretrained=x,layers={condition.layers},knockout=mask")
    assert make_condition("gate_ablated", layers=replayed["layers"]) == condition
    assert replayed["knockout"] == "mask"


@pytest.mark.parametrize("spec", ["abc", "5-3", "-1", "last:x", [], [1.5], True, "1-", "3++5", "3,+5"])
def test_bad_layer_specs(spec):
    with pytest.raises(ValueError, match="layers"):
        make_condition("gate_ablated", layers=spec)


def test_layers_beyond_the_model():
    with pytest.raises(ValueError, match=r"the model has 32 layers \(0-31\); got \[32, 40\]"):
        resolve_layers("30-32+40", 32)
    with pytest.raises(ValueError, match="last:40 but the model has only 32 layers"):
        resolve_layers("last:40", 32)
