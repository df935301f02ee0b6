"""``narrowgate analyze``: every analysis runs from the CLI on a tiny checkpoint of every family and
writes its CSV, JSON and PNG; real data comes from ``$NARROWGATE_DATA_DIR`` in the documented layout and
a missing copy is a clear error."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from narrowgate import cli
from narrowgate.analyses import ANALYSES
from narrowgate.tiny import TINY_FAMILIES

SMALL = {
    "attention": [],
    "gap": ["--z", "2.5"],
    "overlap": ["--k", "3"],
    "patching": ["--pairs", "3"],
    "locate": ["--pairs", "3"],
    "progressive": ["--k", "3"],
}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_analysis_runs_from_the_cli_on_every_family(tiny_dir, tmp_path, family, capsys):
    for name in ANALYSES:
        args = ["analyze", name, "--model", str(tiny_dir(family)), "--family", family, "-n", "6"]
        assert cli.main([*args, "--output", str(tmp_path), "--device", "cpu", *SMALL[name]]) == 0, name
        table = pd.read_csv(tmp_path / f"{name}.csv")
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(table) and summary["family"] == family and summary["n"] == 6, name
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        said = capsys.readouterr().out
        assert said.split("\n")[0] and not said.startswith("narrowgate analyze"), f"{name} printed no summary: {said}"
    assert set(pd.read_csv(tmp_path / "progressive.csv").condition) == {"baseline", "gate_ablated", "gate_only"}
    assert json.loads((tmp_path / "gap.json").read_text())["z"] == 2.5
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_an_analysis_runs_under_a_condition_and_records_it(tiny_dir, tmp_path):
    args = ["analyze", "attention", "--model", str(tiny_dir("chameleon")), "--family", "chameleon", "-n", "4"]
    assert cli.main([*args, "--output", str(tmp_path), "--condition", "gate_ablated", "--layers", "last:1"]) == 0
    summary = json.loads((tmp_path / "attention.json").read_text())
    assert summary["condition"]["name"] == "gate_ablated" and summary["condition"]["layers"] == "last:1"
    assert summary["gate_share_by_layer"][-1] == 0 and summary["gate_share_by_layer"][0] > 0


def test_an_analysis_runs_under_a_flow(tiny_dir, tmp_path, capsys):
    """--condition flow takes its edges from --cut (and heads from --heads); without them it is refused."""
    args = ["analyze", "attention", "--model", str(tiny_dir("chameleon")), "--family", "chameleon", "-n", "4"]
    flow = ["--condition", "flow", "--cut", "gate>text", "--layers", "last:1", "--heads", "0"]
    assert cli.main([*args, "--output", str(tmp_path), *flow]) == 0
    summary = json.loads((tmp_path / "attention.json").read_text())
    assert summary["condition"]["cut"] == "gate>text" and summary["condition"]["heads"] == "0"
    capsys.readouterr()
    assert cli.main([*args, "--output", str(tmp_path / "refused"), "--condition", "flow"]) != 0
    assert "condition 'flow' needs cut=" in capsys.readouterr().err


def test_progressive_takes_other_conditions(tiny_dir, tmp_path):
    args = ["analyze", "progressive", "--model", str(tiny_dir("chameleon")), "--family", "chameleon", "-n", "6", "--k", "2"]
    assert cli.main([*args, "--output", str(tmp_path), "--conditions", "image_ablated"]) == 0
    assert set(pd.read_csv(tmp_path / "progressive.csv").condition) == {"baseline", "image_ablated"}


def test_figures_name_the_model_condition_and_n_with_integer_layer_ticks(tiny_dir):
    from interventions import make_condition
    from narrowgate.analyses import attention, gap, overlap, patching
    from narrowgate.analyses.data import load_examples
    from narrowgate.analyses.subject import Subject

    subject = Subject("chameleon", str(tiny_dir("chameleon")), device="cpu", dtype="float32", batch_size=4)
    examples = load_examples("shapes", 6)
    condition = make_condition("gate_ablated", layers="last:1")
    results = [
        attention.analyse(subject, examples, condition),
        gap.analyse(subject, examples, condition),
        overlap.analyse(subject, examples, condition, k=2),
        patching.analyse(subject, examples, condition, pairs=3),
    ]
    for result in results:
        figure = result.figure
        heading = figure._suptitle.get_text() if figure._suptitle else figure.axes[0].get_title()
        assert subject.name in heading and "gate_ablated layers last:1" in heading and "n=" in heading, heading
        assert "/" not in heading, heading
        for ax in figure.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (result.name, ticks)
        assert result.report, result.name


def test_folder_data_from_the_data_dir(tiny_dir, tmp_path, monkeypatch):
    root = tmp_path / "data"
    for label, colour in (("red", (220, 40, 40)), ("blue", (40, 80, 220))):
        (root / "colours" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), tuple(c + 5 * i for c in colour)).save(root / "colours" / label / f"{i}.png")
    monkeypatch.setenv("NARROWGATE_DATA_DIR", str(root))
    args = ["analyze", "overlap", "--model", str(tiny_dir("llava")), "--family", "llava", "--data", "folder:colours"]
    assert cli.main([*args, "-n", "6", "--k", "2", "--output", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "overlap.csv")
    assert set(table.label) == {"class"}
    summary = json.loads((tmp_path / "out" / "overlap.json").read_text())
    assert summary["chance"] == {"class": pytest.approx(2 * 3 * 2 / (6 * 5))}  # two labels of three images


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ("folder:missing", True, "missing does not exist; expected"),
        ("folder:colours", False, "NARROWGATE_DATA_DIR, which is not set"),
        ("flickr30k", True, "nlphuji/flickr30k/test does not exist"),
        ("imagenet", False, "unknown data 'imagenet'"),
    ],
)
def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys, data, env, message):
    if env:
        monkeypatch.setenv("NARROWGATE_DATA_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("NARROWGATE_DATA_DIR", raising=False)
    args = ["analyze", "overlap", "--model", "toy", "--data", data, "--output", str(tmp_path / "out")]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_path_needs_its_family(tmp_path, capsys):
    assert cli.main(["analyze", "gap", "--model", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "give --family" in capsys.readouterr().err
