"""The analyses tell the same story as the ablations on the two shipped toys: the planted toy's gate takes
most of the text->image attention on the task's prompt, is located as the route, patching it moves the
answer toward the base image, and its overlap with the labels rises above the image tokens'; the natural
toy (no narrow gate) shows none of this, and locate says so instead of naming a gate."""

from __future__ import annotations

import json

import pytest

from narrowgate import cli
from narrowgate.analyses import locate, overlap, patching
from narrowgate.analyses.attention import GROUPS
from narrowgate.analyses.data import load_examples
from narrowgate.analyses.subject import Subject, resolve_model


@pytest.fixture(scope="module")
def examples():
    return load_examples("shapes", 48)


@pytest.fixture(scope="module")
def toys():
    return {name: Subject(*resolve_model(name, None), device="cpu", dtype="float32", batch_size=16) for name in ("toy", "planted")}


def test_attention_share_on_the_default_prompt_peaks_at_the_planted_gate_only(tmp_path, capsys):
    """issue 19's done-when: ``narrowgate analyze attention --model planted`` with the defaults (the VQA
    prompt, the paper's normalisation over image tokens + gate) gives the gate >= 0.7 where it peaks; the
    natural toy's gate stays <= 0.2 in every layer. Under the caption prompt the planted gate took 0.40-0.49."""
    peaks = {}
    for name in ("planted", "toy"):
        assert cli.main(["analyze", "attention", "--model", name, "--device", "cpu", "--output", str(tmp_path / name)]) == 0
        found = json.loads((tmp_path / name / "attention.json").read_text())
        shares: dict[int, dict[str, float]] = {}
        for row in found["rows"]:
            shares.setdefault(row["layer"], {})[row["group"]] = row["share"]
        assert all(set(groups) == set(GROUPS) == {"gate", "last", "image", "special"} for groups in shares.values())
        assert all(sum(groups.values()) == pytest.approx(1, abs=1e-9) for groups in shares.values())
        peaks[name] = max(groups["gate"] for groups in shares.values())
    assert peaks["planted"] >= 0.7 and peaks["toy"] <= 0.2, peaks
    assert "gate's share of the text->image attention: peak" in capsys.readouterr().out


def test_locate_names_the_planted_gate_and_no_route_in_the_natural_toy(toys, examples):
    found = {
        name: locate.locate(subject, examples, None, n_pairs=6, after=1, knockout="zero", seed=0)
        for name, subject in toys.items()
    }
    assert found["planted"].iloc[0].candidate == "gate[0]", found["planted"].head()
    natural_gate = found["toy"].set_index("candidate").loc["gate[0]"]
    assert found["planted"].iloc[0].transfer > natural_gate.transfer + 0.5
    assert locate.verdict(found["planted"])[0] == "gate[0]"
    located, sentence = locate.verdict(found["toy"])
    assert located is None and sentence.startswith("no single-token route: best transfer"), sentence


def test_patching_the_gate_flips_the_planted_toys_answers_toward_the_source_not_the_natural_ones(toys, examples):
    tables = {name: patching.analyse(subject, examples, pairs=24).table for name, subject in toys.items()}
    flips = {name: table.groupby("mode").flip_fraction.max() for name, table in tables.items()}
    assert flips["planted"]["cumulative"] >= 0.6 and flips["planted"]["single"] >= 0.3, flips
    assert flips["toy"].max() <= 0.1, flips
    assert (tables["toy"].flip_either <= 0.1).all()


def test_the_planted_gates_overlap_with_the_labels_rises_above_the_image_tokens(toys, examples):
    result = overlap.analyse(toys["planted"], examples)
    best = result.table.groupby(["label", "token"]).chi.max().unstack()
    assert (best["gate"] > best["image"]).all(), best
    assert set(result.summary["ceiling"].values()) == {1.0}  # default k below the smallest class


def test_the_study_measures_each_checkpoint_with_the_analyses(tmp_path):
    """study/evaluation.py: per checkpoint, the attention share on the study's (VQA) prompt, flips toward
    the source, the modality gap and the gate's chi (issue 19 item 9), each a number the table can read."""
    from pathlib import Path

    from narrowgate.study.evaluation import ANALYSES, analyse
    from narrowgate.study.plan import Reference, load_study

    study = load_study(Path(__file__).parents[1] / "configs" / "study_mini.yaml")
    planted = Reference("planted")
    analyse(planted, study, tmp_path)
    found = {name: json.loads((planted.folder(tmp_path) / f"{name}.json").read_text()) for name in ANALYSES}
    assert found["attention"]["prompt"] == "vqa" and found["attention"]["gate_vs_image"] > 0.7
    assert found["patching"]["flip_fraction"] >= 0 and "flip_either" in found["patching"]
    assert 0 <= found["gap"]["gap_homogeneity"] <= 1 and 0 <= found["gap"]["gap_cosine"] <= 1
    assert found["overlap"]["gate_chi"] > found["overlap"]["image_chi"] > found["overlap"]["chance_chi"]
