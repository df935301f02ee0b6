"""``narrowgate sweep``: the windows it plans, and end to end on the planted toy (real weights, real
lmms-eval runs): one batched pass, each window = the condition run alone, Δ from the samples, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from narrowgate.cli import main
from narrowgate.grid import ConfigError, ConditionSpec, GridConfig, ModelSpec, run_grid
from narrowgate.sweep import Sweep, condition_specs, head_windows, layer_windows, run_sweep

REPO = Path(__file__).resolve().parents[1]
PLANTED = str(REPO / "narrowgate" / "assets" / "toy_chameleon_planted")
TASK = "narrowgate_smoke_vqa"
LIMIT = 8
MODEL = ModelSpec("planted", "chameleon", PLANTED, None, {"batch_size": 4})


def test_layer_windows_slide_over_the_span():
    assert [(w.label, w.start, w.layers) for w in layer_windows(4, [1, 2], 1)] == [
        ("layers0", 0, "0"),
        ("layers1", 1, "1"),
        ("layers2", 2, "2"),
        ("layers3", 3, "3"),
        ("layers0-1", 0, "0-1"),
        ("layers1-2", 1, "1-2"),
        ("layers2-3", 2, "2-3"),
    ]
    assert [w.layers for w in layer_windows(32, [4], 4, range(8, 24))] == ["8-11", "12-15", "16-19", "20-23"]
    assert [w.layers for w in layer_windows(5, [2], 2)] == ["0-1", "2-3"]  # a window never leaves the span
    assert [(w.label, w.position, w.params()) for w in head_windows(2, [2, 3])] == [
        ("head0_layers2-3", 0, {"layers": "2-3", "heads": "0"}),
        ("head1_layers2-3", 1, {"layers": "2-3", "heads": "1"}),
    ]


def test_options_are_recorded_canonically():
    """A default spelled out or left out records the same cells (a rerun resumes either way)."""
    windows = layer_windows(4, [2], 2)
    implicit = condition_specs("flow", {"cut": "gate>text"}, windows)
    explicit = condition_specs("flow", {"cut": "gate>text", "knockout": "zero"}, windows)
    assert [s.record() for s in implicit] == [s.record() for s in explicit]
    assert implicit[1].params == {"knockout": "zero", "cut": "gate>text", "layers": "0-1"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: layer_windows(4, [5], 1), r"--window 5: the sweep covers 4 layers \(0-3\); use 1-4"),
        (lambda: layer_windows(4, [1], 0), "--stride must be a positive integer"),
        (lambda: condition_specs("gate_ablated", {"layers": "0-1"}, []), "leave layers out of the condition's options"),
        (lambda: condition_specs("baseline", {}, layer_windows(2, [1], 1)), "a sweep of it measures nothing"),
        (lambda: condition_specs("gate_ablated", {"knockout": "soft"}, layer_windows(2, [1], 1)), "unknown knockout 'soft'"),
    ],
)
def test_bad_sweeps_are_refused_before_any_model_loads(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


class Generations:
    """Records the conditions of every generation pass of the wrappers (calling through to the real code)."""

    def __init__(self, monkeypatch):
        from model_wrappers.generation import Generator

        self.passes: list[list[str]] = []
        real = Generator.generate

        def generate(generator, requests, conditions, *args, **kwargs):
            self.passes.append([f"{c.name}:{c.layers}" for c in conditions])
            return real(generator, requests, conditions, *args, **kwargs)

        monkeypatch.setattr(Generator, "generate", generate)


CUT = {"cut": "gate>text", "knockout": "mask"}


def sweep_of(sizes) -> Sweep:
    return Sweep(MODEL, TASK, "flow", tuple(layer_windows(4, sizes, 1)), CUT, LIMIT)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as monkeypatch:
        generations = Generations(monkeypatch)
        result = run_sweep(sweep_of([1, 4]), out, n_resamples=2000)
    return out, result, generations.passes


def samples(folder: Path) -> dict:
    """A finished cell's samples by doc_id, without the audit's checkpoint path."""
    record = json.loads((folder / "cell.json").read_text())
    found = {}
    for line in (folder / record["samples"]).read_text().splitlines():
        sample = json.loads(line)
        sample["narrowgate"].pop("pretrained")
        found[sample["doc_id"]] = sample
    return found


def test_every_window_runs_in_one_batched_pass(swept):
    _, result, passes = swept
    windows = ["flow:0", "flow:1", "flow:2", "flow:3", "flow:0-3"]
    assert [sorted(p) for p in passes] == [sorted(["baseline:None", *windows])]
    assert [w.window.label for w in result.windows] == ["layers0", "layers1", "layers2", "layers3", "layers0-3"]


def test_a_window_is_the_condition_run_alone(swept, tmp_path):
    """The window over every layer answers as the plain flow in a grid of its own, one cell at a time."""
    out, result, _ = swept
    alone = GridConfig(
        tmp_path / "alone.yaml",
        "",
        (TASK,),
        (ConditionSpec("flow", "flow", CUT),),
        (MODEL,),
        LIMIT,
    )
    assert not run_grid(alone, tmp_path / "alone", sequential=True).failed
    window = samples(out / "planted" / "layers0-3" / TASK)
    single = samples(tmp_path / "alone" / "planted" / "flow" / TASK)
    for doc in single.values():
        doc["narrowgate"]["condition"]["layers"] = "0-3"  # all layers, spelled out by the window
    assert {d: s["filtered_resps"] for d, s in window.items()} == {d: s["filtered_resps"] for d, s in single.items()}
    assert window == single


def test_the_changes_are_paired_over_the_documents(swept):
    out, result, _ = swept
    base = samples(out / "planted" / "baseline" / TASK)
    assert result.baseline == pytest.approx(np.mean([s["vqa_accuracy"] for s in base.values()]))
    for entry in result.windows:
        cut = samples(out / "planted" / entry.window.label / TASK)
        assert entry.score == pytest.approx(np.mean([s["vqa_accuracy"] for s in cut.values()]))
        differences = [cut[d]["vqa_accuracy"] - base[d]["vqa_accuracy"] for d in base]
        assert entry.delta.delta == pytest.approx(np.mean(differences), abs=1e-12)
        assert entry.delta.n == LIMIT
        assert entry.delta.ci_low <= entry.delta.delta <= entry.delta.ci_high
    assert result.windows[-1].delta.delta < 0  # the planted toy's text reads the image through its gate


def test_cli_resumes_writes_the_table_and_plot(swept, tmp_path, monkeypatch, capsys):
    import shutil

    out, result, _ = swept
    folder = tmp_path / "resumed"
    shutil.copytree(out, folder)
    generations = Generations(monkeypatch)
    args = ["sweep", "--pretrained", PLANTED, "--family", "chameleon", "--name", "planted", "--task", TASK]
    args += ["--condition", "flow", "--option", "cut=gate>text", "--option", "knockout=mask", "--model-arg", "batch_size=4"]
    args += ["--limit", str(LIMIT), "--output", str(folder), "--resamples", "2000"]
    assert main([*args, "--window", "1", "--window", "2"]) == 0
    # the windows of 1 layer were done: only those of 2 generate, in one pass
    assert [sorted(p) for p in generations.passes] == [["flow:0-1", "flow:1-2", "flow:2-3"]]
    printed = capsys.readouterr()
    assert f"baseline vqa_accuracy = {result.baseline:.3f} (n = {LIMIT} documents)" in printed.out
    table = pd.read_csv(folder / "sweep.csv")
    assert list(table["window"]) == ["layers0", "layers1", "layers2", "layers3", "layers0-1", "layers1-2", "layers2-3"]
    for entry in result.windows[:4]:  # the resumed windows keep their numbers
        row = table[table["window"] == entry.window.label].iloc[0]
        assert (row["delta"], row["ci_low"], row["ci_high"]) == pytest.approx(
            (entry.delta.delta, entry.delta.ci_low, entry.delta.ci_high)
        )
    document = json.loads((folder / "sweep_results.json").read_text())
    assert document["metric"] == "vqa_accuracy" and len(document["windows"]) == 7
    assert (folder / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    generations.passes.clear()
    assert main([*args, "--window", "1", "--window", "2"]) == 0
    assert generations.passes == []  # all done: nothing generates


def test_cli_errors_name_the_problem(tmp_path, capsys):
    args = ["sweep", "--pretrained", PLANTED, "--family", "chameleon", "--task", TASK, "--output", str(tmp_path)]
    assert main([*args, "--condition", "gate_ablated", "--option", "knockout"]) == 2
    assert "--option 'knockout': expected KEY=VALUE" in capsys.readouterr().err
    assert main([*args, "--condition", "gate_ablated", "--window", "5"]) == 2
    assert "--window 5: the sweep covers 4 layers" in capsys.readouterr().err
    assert main([*args, "--condition", "gate_ablated", "--heads", "--window", "1"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_a_head_sweep_cuts_one_head_per_window(tmp_path):
    windows = tuple(head_windows(4, [2, 3]))
    result = run_sweep(Sweep(MODEL, TASK, "flow", windows, CUT, 4), tmp_path, n_resamples=200)
    assert [(w.window.label, w.window.position) for w in result.windows] == [(f"head{h}_layers2-3", h) for h in range(4)]
    for entry in result.windows:
        (doc, *_) = samples(tmp_path / "planted" / entry.window.label / TASK).values()
        assert doc["narrowgate"]["condition"]["heads"] == str(entry.window.head)
