"""The analyses tell the same story as the ablations on the two shipped toys: the planted toy's gate is
located first, patching it transfers the base image's answer, and its overlap with the labels rises
above the image tokens'; the natural toy (no narrow gate) shows none of this."""

from __future__ import annotations

import pytest

from narrowgate.analyses import locate, overlap, patching
from narrowgate.analyses.data import load_examples
from narrowgate.analyses.subject import Subject, resolve_model


@pytest.fixture(scope="module")
def examples():
    return load_examples("shapes", 48)


@pytest.fixture(scope="module")
def toys():
    return {name: Subject(*resolve_model(name, None), device="cpu", dtype="float32", batch_size=16) for name in ("toy", "planted")}


def test_locate_ranks_the_gate_first_only_in_the_planted_toy(toys, examples):
    found = {
        name: locate.locate(subject, examples, None, n_pairs=6, after=1, knockout="zero", seed=0)
        for name, subject in toys.items()
    }
    assert found["planted"].iloc[0].candidate == "gate[0]", found["planted"].head()
    assert found["toy"].iloc[0].candidate != "gate[0]", found["toy"].head()
    natural_gate = found["toy"].set_index("candidate").loc["gate[0]"]
    assert found["planted"].iloc[0].transfer > natural_gate.transfer + 0.5


def test_patching_the_gate_flips_the_planted_toys_answers_not_the_natural_ones(toys, examples):
    flips = {
        name: patching.analyse(subject, examples, pairs=24).table.groupby("mode").flip_fraction.max()
        for name, subject in toys.items()
    }
    assert flips["planted"]["cumulative"] >= 0.6 and flips["planted"]["single"] >= 0.3, flips
    assert flips["toy"].max() <= 0.1, flips


def test_the_planted_gates_overlap_with_the_labels_rises_above_the_image_tokens(toys, examples):
    table = overlap.analyse(toys["planted"], examples, k=10).table
    best = table.groupby(["label", "token"]).chi.max().unstack()
    assert (best["gate"] > best["image"]).all(), best
