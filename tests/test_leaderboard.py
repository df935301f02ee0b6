"""The leaderboard on fabricated grid folders in lmms-eval's output format, with known answers."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from narrowgate import leaderboard
from narrowgate.cli import main
from narrowgate.core.files import write_json_atomic
from narrowgate.grid import Cell, ConditionSpec, ModelSpec, cell_dir

VQA, CAP = "narrowgate_smoke_vqa", "narrowgate_smoke_caption"
N_DOCS = 40
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_cell(root: Path, model: str, condition: ConditionSpec, task: str, order, per_sample: dict, aggregate: dict):
    """One finished cell as `narrowgate grid` leaves it: lmms-eval results json + samples jsonl + cell.json.

    per_sample: metric -> list of per-document values as they appear in the samples log (numbers, or
    dicts); aggregate: metric -> the aggregated value lmms-eval would report.
    """
    cell = Cell(ModelSpec(model, "chameleon", None, 0), condition, task, order)
    folder = cell_dir(root, cell)
    sub = folder / "tiny"
    sub.mkdir(parents=True)
    results = {
        "results": {
            task: {
                "alias": task,
                **{f"{m},none": v for m, v in aggregate.items()},
                **{f"{m}_stderr,none": "N/A" for m in aggregate},
                **{f"{m}_stderr_clt,none": 0.01 for m in aggregate},
            }
        },
        "configs": {task: {"task": task, "metric_list": [{"metric": m} for m in aggregate]}},
    }
    (sub / "20250101_000000_results.json").write_text(json.dumps(results))
    n = len(next(iter(per_sample.values())))
    with open(sub / f"20250101_000000_samples_{task}.jsonl", "w") as f:
        for doc_id in range(n):
            record = {"doc_id": doc_id, "target": "x", "filtered_resps": ["y"], "filter": "none"}
            record.update({m: values[doc_id] for m, values in per_sample.items()})
            f.write(json.dumps(record) + "\n")
    write_json_atomic(
        folder / "cell.json",
        {
            "spec": cell.record(None),
            "order": list(order),
            "results": "tiny/20250101_000000_results.json",
            "samples": f"tiny/20250101_000000_samples_{task}.jsonl",
        },
    )
    return folder


BASE = ConditionSpec("baseline", "baseline", {})
GATE = ConditionSpec("gate_ablated", "gate_ablated", {})


def random_repeat(seed):
    return ConditionSpec("random_image_ablated", "random_image_ablated", {"seed": seed}, repeated=True)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two models; model A has baseline, gate_ablated (constant shift -0.25 on VQA) and three random
    repeats (VQA means 0.3, 0.4, 0.5 around the per-document baseline); model B has no baseline."""
    root = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(0)
    vqa_base = np.round(rng.random(N_DOCS) * 0.5 + 0.25, 6)  # in [0.25, 0.75]
    cider_base = rng.random(N_DOCS) * 2

    def vqa(values):
        return {"exact_match": list(values)}, {"exact_match": float(np.mean(values))}

    def cap(cider, bleu):
        # CIDEr per image as a dict with a score field; BLEU only as data for a corpus aggregation
        per = {
            "cider": [{"score": float(c), "pred": "y"} for c in cider],
            "bleu4": [{"pred": "y", "refs": ["x"]}] * len(cider),
        }
        return per, {"cider": float(np.mean(cider)), "bleu4": bleu}

    write_cell(root, "A", BASE, VQA, (0, 0, 0), *vqa(vqa_base))
    write_cell(root, "A", BASE, CAP, (0, 0, 1), *cap(cider_base, 0.30))
    write_cell(root, "A", GATE, VQA, (0, 1, 0), *vqa(vqa_base - 0.25))
    write_cell(root, "A", GATE, CAP, (0, 1, 1), *cap(cider_base * 0.5, 0.10))
    for seed, shift in zip((0, 1, 2), (-0.2, -0.1, 0.0)):
        repeat = random_repeat(seed)
        write_cell(root, "A", repeat, VQA, (0, 2, 0), *vqa(vqa_base + shift))
        write_cell(root, "A", repeat, CAP, (0, 2, 1), *cap(cider_base, 0.30))
    write_cell(root, "B", GATE, VQA, (1, 1, 0), *vqa(vqa_base))
    # a half-written cell of an interrupted grid must be ignored
    partial = root / "B" / "baseline" / f"{VQA}.partial"
    partial.mkdir(parents=True)
    (partial / "cell.json").write_text("{}")
    return root, vqa_base, cider_base


def test_rows_and_columns(grid):
    root, _, _ = grid
    board = leaderboard.build(root, n_resamples=2000)
    assert [(r.model, r.condition, r.seeds) for r in board.rows] == [
        ("A", "baseline", 1),
        ("A", "gate_ablated", 1),
        ("A", "random_image_ablated", 3),
        ("B", "gate_ablated", 1),
    ]
    assert [c.label for c in board.columns] == [f"{VQA} exact_match", f"{CAP} cider", f"{CAP} bleu4"]
    assert board.primary == {VQA: "exact_match", CAP: "cider"}
    b_row = board.rows[3]
    assert set(b_row.entries) == {leaderboard.Column(VQA, "exact_match")}
    assert b_row.entries[leaderboard.Column(VQA, "exact_match")].delta is None
    assert any("B has no 'baseline'" in note for note in board.notes)


def test_deltas_std_and_intervals(grid):
    root, vqa_base, cider_base = grid
    board = leaderboard.build(root, n_resamples=2000)
    rows = {(r.model, r.condition): r for r in board.rows}
    em, cider, bleu = board.columns
    base = rows["A", "baseline"].entries[em]
    assert base.value == pytest.approx(vqa_base.mean()) and base.delta is None and base.std is None

    gate = rows["A", "gate_ablated"].entries
    assert gate[em].delta.delta == pytest.approx(-0.25)
    assert (gate[em].delta.ci_low, gate[em].delta.ci_high) == pytest.approx((-0.25, -0.25))
    assert gate[em].delta.p_value < 0.001
    assert gate[cider].delta.delta == pytest.approx(-0.5 * cider_base.mean())  # from the dict "score" field
    assert gate[cider].delta.ci_low < gate[cider].delta.delta < gate[cider].delta.ci_high < 0
    assert gate[bleu].delta is None and gate[bleu].plain_delta == pytest.approx(-0.20)  # no per-sample score

    rand = rows["A", "random_image_ablated"].entries
    assert rand[em].value == pytest.approx(vqa_base.mean() - 0.1)
    assert rand[em].std == pytest.approx(0.1)  # sample std of (-0.2, -0.1, 0.0) shifts
    assert rand[em].seeds == 3
    assert rand[em].delta.delta == pytest.approx(-0.1)  # per-document mean over seeds vs baseline
    assert rand[cider].std == pytest.approx(0.0) and rand[cider].delta.delta == pytest.approx(0.0)
    assert (rand[cider].delta.ci_low, rand[cider].delta.ci_high) == pytest.approx((0.0, 0.0))


def test_markdown_csv_latex(grid):
    root, vqa_base, _ = grid
    board = leaderboard.build(root, n_resamples=2000)
    md = leaderboard.render(board, "md")
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in md.splitlines()[:6]]
    assert lines[0] == ["model", "condition", f"{VQA} exact_match", f"{CAP} cider", f"{CAP} bleu4"]
    assert not lines[1][0].endswith(":") and lines[1][2].endswith("-:")  # names left, numbers right
    assert lines[3][:2] == ["A", "gate_ablated"] and "Δ -0.250 [-0.250, -0.250] p<0.001" in lines[3][2]
    assert lines[4][:2] == ["A", "random_image_ablated (×3)"] and " ± 0.100 " in lines[4][2]
    assert lines[5] == ["B", "gate_ablated", f"{vqa_base.mean():.3f}", "–", "–"]

    rows = list(csv.DictReader(io.StringIO(leaderboard.render(board, "csv"))))
    assert [(r["model"], r["condition"], r["seeds"]) for r in rows] == [
        ("A", "baseline", "1"),
        ("A", "gate_ablated", "1"),
        ("A", "random_image_ablated", "3"),
        ("B", "gate_ablated", "1"),
    ]
    assert float(rows[1][f"{VQA}:exact_match:delta"]) == pytest.approx(-0.25)
    assert float(rows[1][f"{VQA}:exact_match:p"]) < 0.001
    assert int(rows[1][f"{VQA}:exact_match:n"]) == N_DOCS
    assert rows[1][f"{CAP}:bleu4:ci_low"] == "" and float(rows[1][f"{CAP}:bleu4:delta"]) == pytest.approx(-0.2)
    assert float(rows[2][f"{VQA}:exact_match:std"]) == pytest.approx(0.1)

    latex = leaderboard.render(board, "latex")
    assert r"\begin{tabular}{llrrr}" in latex and r"narrowgate\_smoke\_vqa exact\_match" in latex
    assert latex.count(r"\\") == 1 + len(board.rows)


def test_html_is_one_self_contained_page(grid):
    root, _, _ = grid
    page = leaderboard.render(leaderboard.build(root, n_resamples=500), "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # no external resources
    (image,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    import base64

    assert base64.b64decode(image).startswith(PNG_MAGIC)
    assert page.count("<tr>") == 1 + 4
    assert 'class="delta down"' in page  # the significant drop is highlighted


def test_plot_has_one_panel_per_task(grid, tmp_path):
    root, _, _ = grid
    board = leaderboard.build(root, n_resamples=200)
    path = leaderboard.write_plot(board, tmp_path / "plot.png")
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert height > width * 0.8  # two stacked panels


def test_metric_selection(grid):
    root, _, _ = grid
    board = leaderboard.build(root, metrics=[f"{CAP}:cider", "exact_match"], n_resamples=200)
    assert [c.label for c in board.columns] == [f"{VQA} exact_match", f"{CAP} cider"]
    with pytest.raises(ValueError, match="selects nothing; available: .*narrowgate_smoke_caption:bleu4"):
        leaderboard.build(root, metrics=["nope"])


def test_cli_writes_table_and_plot(grid, tmp_path, capsys):
    root, _, _ = grid
    assert (
        main(["leaderboard", str(root), "--format", "csv", "--plot", str(tmp_path / "p.png"), "--resamples", "200"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("model,condition,seeds,")
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)
    assert main(["leaderboard", str(tmp_path / "empty")]) == 2
    assert "nothing to tabulate under" in capsys.readouterr().err


def test_different_documents_are_an_error(tmp_path):
    write_cell(tmp_path, "A", BASE, VQA, (0, 0, 0), {"exact_match": [1.0] * 5}, {"exact_match": 1.0})
    write_cell(tmp_path, "A", GATE, VQA, (0, 1, 0), {"exact_match": [0.0] * 4}, {"exact_match": 0.0})
    with pytest.raises(ValueError, match=r"A: gate_ablated and its baseline were scored on different documents.*\[4\]"):
        leaderboard.build(tmp_path)


def test_partly_missing_per_sample_scores_are_an_error(tmp_path):
    write_cell(tmp_path, "A", BASE, VQA, (0, 0, 0), {"exact_match": [1.0, None, 0.5]}, {"exact_match": 0.5})
    with pytest.raises(ValueError, match="not for doc_id 1; expected a number or a mapping with a numeric 'score'"):
        leaderboard.build(tmp_path)


def test_aggregate_that_is_not_the_per_sample_mean_is_noted(tmp_path):
    write_cell(tmp_path, "A", BASE, VQA, (0, 0, 0), {"exact_match": [1.0, 0.0]}, {"exact_match": 0.9})
    write_cell(tmp_path, "A", GATE, VQA, (0, 1, 0), {"exact_match": [0.0, 0.0]}, {"exact_match": 0.0})
    board = leaderboard.build(tmp_path, n_resamples=100)
    assert any("not the mean of the per-sample scores" in note for note in board.notes)


def test_failed_cells_of_the_grid_are_listed(tmp_path):
    write_cell(tmp_path, "A", BASE, VQA, (0, 0, 0), {"exact_match": [1.0]}, {"exact_match": 1.0})
    (tmp_path / "grid.json").write_text(
        json.dumps(
            {"cells": [{"cell": "A/baseline/x", "status": "done"}, {"cell": "A/gate_ablated/x", "status": "failed"}]}
        )
    )
    board = leaderboard.build(tmp_path, n_resamples=100)
    assert any("1 cell(s) failed and are missing: A/gate_ablated/x" in note for note in board.notes)


# ----------------------------------------------------------------------------------------------- gate share

GATE_ONLY = ConditionSpec("gate_only", "gate_only", {})
IMAGE = ConditionSpec("image_ablated", "image_ablated", {})


@pytest.fixture(scope="module")
def shares_grid(tmp_path_factory):
    """Model "narrow": blocking the gate costs exactly what cutting the image costs, keeping only the gate
    costs nothing (up to noise); model "wide": the other way round, with noise on both."""
    root = tmp_path_factory.mktemp("shares")
    rng = np.random.default_rng(1)
    base = rng.random(N_DOCS) * 0.5 + 0.5
    image = base - (rng.random(N_DOCS) * 0.3 + 0.2)

    def noise():
        return rng.normal(0, 0.02, N_DOCS)

    runs = {
        "narrow": [(BASE, base), (GATE, image), (GATE_ONLY, base + noise()), (IMAGE, image)],
        "wide": [(BASE, base), (GATE, base + noise()), (GATE_ONLY, image + noise()), (IMAGE, image)],
    }
    runs = {name: [(c, list(s)) for c, s in by_condition] for name, by_condition in runs.items()}
    runs["faint"] = [
        (BASE, SMALL_EFFECT[0]),
        (GATE, SMALL_EFFECT[1]),
        (GATE_ONLY, SMALL_EFFECT[0]),
        (IMAGE, SMALL_EFFECT[1]),
    ]
    runs["sparse"] = [(BASE, SPARSE[0]), (GATE, SPARSE[1]), (GATE_ONLY, SPARSE[0]), (IMAGE, SPARSE[1])]
    for m, (model, by_condition) in enumerate(runs.items()):
        for c, (condition, scores) in enumerate(by_condition):
            aggregate = {"vqa_accuracy": float(np.mean(scores))}
            write_cell(root, model, condition, VQA, (m, c, 0), {"vqa_accuracy": list(scores)}, aggregate)
    return root


# VQA-like 0/1 scores on 64 documents where cutting the image changes 10 answers, 6 for the worse:
# an image effect of 0.03 whose CI contains 0, so any share of it is undefined (not 1.00 [-1.5, 3.0]).
SMALL_EFFECT = ([1.0] * 6 + [0.0] * 4 + [1.0] * 54, [0.0] * 6 + [1.0] * 4 + [1.0] * 54)
# 6 documents, the image matters on 3: 1/64 of the resamples draw none of them (an effect of exactly 0,
# no ratio, left out and counted) while the effect's CI stays above 0.
SPARSE = ([1.0] * 6, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_gate_share_covers_one_and_zero(shares_grid):
    board = leaderboard.build(shares_grid, n_resamples=2000)
    shares = {s.model: s for s in board.shares}
    assert [(s.model, s.task, s.metric) for s in board.shares] == [
        (model, VQA, "vqa_accuracy") for model in ("narrow", "wide", "faint", "sparse")
    ]
    narrow, wide = shares["narrow"], shares["wide"]
    # gate_ablated == image_ablated on every document: the share through the gate is 1 in every resample
    assert (narrow.through.ratio, narrow.through.ci_low, narrow.through.ci_high) == pytest.approx((1, 1, 1), abs=1e-12)
    assert narrow.bypass.ci_low < 0 < narrow.bypass.ci_high and narrow.bypass.ci_high - narrow.bypass.ci_low < 0.2
    assert wide.through.ci_low < 0 < wide.through.ci_high and wide.through.ci_high - wide.through.ci_low < 0.2
    assert wide.bypass.ci_low < 1 < wide.bypass.ci_high
    assert narrow.image_effect.delta == pytest.approx(0.35, abs=0.05) and narrow.through.n == N_DOCS


def test_gate_share_function(shares_grid):
    base, gate, cut = [1.0, 1.0, 0.5, 0.8], [0.4, 0.6, 0.2, 0.8], [0.0, 0.5, 0.0, 0.5]
    share = leaderboard.gate_share(base, gate, cut, n_resamples=500)
    assert share.ratio == pytest.approx((0.6 + 0.4 + 0.3 + 0.0) / (1.0 + 0.5 + 0.5 + 0.3))
    assert share.ci_low <= share.ratio <= share.ci_high
    with pytest.raises(ValueError, match=r"image effect \(baseline − image_ablated\) is \+0.000 \[\+0.000, \+0.000\]"):
        leaderboard.gate_share(base, gate, base)
    with pytest.raises(ValueError, match="three per-document score lists of equal length"):
        leaderboard.gate_share(base, gate[:3], cut)


def test_gate_share_in_md_html_and_terminal(shares_grid, capsys):
    board = leaderboard.build(shares_grid, n_resamples=500)
    md = leaderboard.render(board, "md")
    narrow_row = next(line for line in md.splitlines() if line.startswith("| narrow ") and "vqa_accuracy" in line)
    assert "1.00 [1.00, 1.00]" in narrow_row
    page = leaderboard.render(board, "html")
    assert "<h2>Gate share</h2>" in page and "1.00 [1.00, 1.00]" in page
    assert main(["leaderboard", str(shares_grid), "--resamples", "500"]) == 0
    summary = capsys.readouterr().out
    lines = summary.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "  gate share (smoke_vqa vqa_accuracy): through 1.00 [1.00, 1.00], bypassing " in summary
    gate_row = next(line for line in lines if line.startswith("  gate_ablated ") and "-0.3" in line)
    assert gate_row.rstrip().endswith("*")  # significant drop marked


def test_gate_share_of_an_effect_whose_ci_contains_zero_is_undefined(shares_grid, capsys):
    """An image effect of 0.03 [−0.03, +0.09]: no share, in the function and in every renderer, which
    print the reason where a ratio would be; a ratio never reads as bounded to [0, 1]."""
    base, cut = SMALL_EFFECT
    assert np.mean(np.subtract(base, cut)) == pytest.approx(2 / 64)
    with pytest.raises(
        ValueError, match=r"image effect \(baseline − image_ablated\) is \+0.031 \[-0.\d+, \+0.\d+\].*contains 0"
    ):
        leaderboard.gate_share(base, cut, cut, n_resamples=2000)
    board = leaderboard.build(shares_grid, n_resamples=2000)
    shares = {s.model: s for s in board.shares}
    faint = shares["faint"]
    assert not faint.defined and faint.through is None and faint.bypass is None
    assert (
        faint.image_effect.delta == pytest.approx(2 / 64) and faint.image_effect.ci_low < 0 < faint.image_effect.ci_high
    )
    assert "contains 0" in faint.undefined and all(shares[m].defined for m in ("narrow", "wide", "sparse"))
    reason = f"faint, {VQA} vqa_accuracy: no gate share: {faint.undefined}."

    summary = " ".join(leaderboard.render(board, "summary").split())  # lines are wrapped at 100 columns
    faint_part = summary[summary.index("faint ") : summary.index("sparse ")]
    assert (
        "gate share (smoke_vqa vqa_accuracy): undefined: the image effect (baseline − image_ablated) is +0.031"
        in faint_part
    )
    assert "through" not in faint_part and "not bounded to [0, 1]" in summary
    md = leaderboard.render(board, "md")
    faint_row = next(line for line in md.splitlines() if line.startswith("| faint ") and "vqa_accuracy" in line)
    assert faint_row.count("undefined: image effect's CI contains 0") == 2 and reason in md
    assert "not bounded to [0, 1]" in md
    page = leaderboard.render(board, "html")
    assert html_text(reason) in page and "faint</b>: smoke_vqa vqa_accuracy: gate share undefined" in page
    latex = leaderboard.render(board, "latex")
    assert r"\footnotesize the image effect (baseline - image\_ablated) is +0.031" in latex
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(leaderboard.render(board, "csv")))}
    prefix = f"gate_share:{VQA}:vqa_accuracy"
    assert rows["faint"][f"{prefix}:defined"] == "False" and rows["faint"][f"{prefix}:through"] == ""
    assert rows["faint"][f"{prefix}:undefined_reason"] == faint.undefined
    assert float(rows["faint"][f"{prefix}:image_effect_ci_low"]) < 0
    assert rows["narrow"][f"{prefix}:defined"] == "True" and float(
        rows["narrow"][f"{prefix}:through"]
    ) == pytest.approx(1)


def test_resamples_without_an_effect_are_counted_and_shown(shares_grid):
    board = leaderboard.build(shares_grid, n_resamples=2000)
    sparse = next(s for s in board.shares if s.model == "sparse")
    assert sparse.defined and sparse.image_effect.ci_low > 0
    dropped = sparse.through.undefined
    assert 0.5 * 2000 / 64 < dropped < 2 * 2000 / 64  # P(no affected document drawn) = 1/64
    assert (sparse.through.ratio, sparse.through.ci_low, sparse.through.ci_high) == (1, 1, 1)
    shown = f"({dropped} of 2000 resamples without effect left out)"
    for fmt in ("summary", "md", "html", "latex"):
        assert shown in " ".join(leaderboard.render(board, fmt).split()), fmt
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(leaderboard.render(board, "csv")))}
    assert rows["sparse"][f"gate_share:{VQA}:vqa_accuracy:through_resamples_left_out"] == str(dropped)


def html_text(text: str) -> str:
    import html

    return html.escape(text)


# ----------------------------------------------------------------------------------------------- HTML page


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory):
    """The HTML page of a narrow-gate model and a no-gate model with long names on 2 tasks x 8 metrics
    each (a table ~2,000 px wide), written to a file."""
    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(2)
    base = rng.random(N_DOCS) * 0.5 + 0.5
    image = base - (rng.random(N_DOCS) * 0.3 + 0.2)
    runs = {
        "toy-chameleon-planted-with-a-long-name": [(BASE, base), (GATE, image), (GATE_ONLY, base), (IMAGE, image)],
        "toy-chameleon": [(BASE, base), (GATE, base), (GATE_ONLY, image), (IMAGE, image)],
    }
    metrics = [f"metric_{i}" for i in range(8)]
    for m, (model, by_condition) in enumerate(runs.items()):
        for c, (condition, scores) in enumerate(by_condition):
            for t, task in enumerate((VQA, CAP)):
                per = {name: list(scores * (1 - i / 20)) for i, name in enumerate(metrics)}
                write_cell(root, model, condition, task, (m, c, t), per, {k: float(np.mean(v)) for k, v in per.items()})
    board = leaderboard.build(root, n_resamples=500)
    path = root / "leaderboard.html"
    path.write_text(leaderboard.render(board, "html"))
    return board, path


def test_html_page_puts_the_verdict_first(wide_page):
    board, path = wide_page
    page = path.read_text()
    verdicts = page.index('<ul class="verdicts">')
    assert verdicts < page.index("<h2>Gate share</h2>") < page.index('<div class="wide">')
    assert (
        "<b>toy-chameleon-planted-with-a-long-name</b>: smoke_vqa metric_0: through the gate 1.00 [1.00, 1.00]: a narrow gate"
        in page
    )
    assert "<b>toy-chameleon</b>: smoke_vqa metric_0: through the gate 0.00 [0.00, 0.00]: no gate" in page
    assert len(board.columns) == 16


# Appended to the page in the browser: measures the layout as drawn and writes it into the DOM.
MEASURE = """<script>
(function () {
  var rect = function (el) { var r = el.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  var box = document.querySelector("div.wide"), row = box.querySelector("tbody tr");
  var out = {width: innerWidth, height: innerHeight, pageWidth: document.documentElement.scrollWidth,
             verdicts: rect(document.querySelector("ul.verdicts")), shares: rect(document.querySelector("h2")),
             box: rect(box), boxScroll: box.scrollWidth, boxClient: box.clientWidth};
  box.scrollLeft = box.scrollWidth;
  out.scrolled = {box: rect(box), model: rect(row.querySelector(".model")), condition: rect(row.querySelector(".condition")),
                  last: rect(row.cells[row.cells.length - 1]), scrollLeft: box.scrollLeft};
  var header = box.querySelectorAll("thead th")[2];
  var column = function () { return Array.prototype.map.call(box.querySelectorAll("tbody tr"), function (r) { return parseFloat(r.cells[2].dataset.sort); }); };
  out.unsorted = column(); header.click(); out.ascending = column(); header.click(); out.descending = column();
  var pre = document.createElement("pre"); pre.id = "measured"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def chromium(*args) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium: apt-get install -y chromium")
@pytest.mark.parametrize("width", [1400, 900])
def test_html_page_in_headless_chromium(wide_page, tmp_path, width):
    """Drawn by a real browser at 1400 and 900 px: the verdict is on the first screen, above the gate-share
    table and the wide table; the page itself never scrolls sideways, the wide table scrolls in its box
    with the model and condition columns fixed; a header click sorts its column both ways; the
    screenshot is the window's width and shows the verdict's text."""
    from PIL import Image

    _, path = wide_page
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(path.read_text().replace("</body>", MEASURE + "\n</body>"))
    dom = chromium(f"--window-size={width},900", "--dump-dom", measured_page.as_uri()).stdout
    m = json.loads(html_unescape(re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL).group(1)))
    assert m["width"] == width and m["pageWidth"] <= width  # nothing sticks out of the page
    verdicts = m["verdicts"]
    assert 0 <= verdicts["top"] and verdicts["bottom"] <= m["height"] and verdicts["right"] <= width
    assert verdicts["bottom"] <= m["shares"]["top"] < m["box"]["top"]
    assert m["boxScroll"] > m["boxClient"] + 300, "the wide table should scroll inside its box"
    scrolled = m["scrolled"]
    assert scrolled["scrollLeft"] > 300 and scrolled["last"]["right"] <= scrolled["box"]["right"] + 1
    assert abs(scrolled["model"]["left"] - scrolled["box"]["left"]) <= 2, "the model column did not stay"
    assert abs(scrolled["condition"]["left"] - scrolled["model"]["right"]) <= 2, "the condition column did not stay"
    assert m["ascending"] == sorted(m["unsorted"]) and m["descending"] == sorted(m["unsorted"], reverse=True)
    assert m["unsorted"] != m["ascending"]

    shot = tmp_path / "shot.png"
    chromium(f"--window-size={width},900", f"--screenshot={shot}", path.as_uri())
    image = Image.open(shot).convert("L")
    assert image.size == (width, 900)
    box = tuple(
        round(v) for v in (verdicts["left"], verdicts["top"], min(verdicts["right"], width), verdicts["bottom"])
    )
    assert image.crop(box).getextrema()[0] < 100, "no dark text where the verdict should be"


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_terminal_summary_fits_100_columns_with_long_names(grid):
    root, _, _ = grid
    board = leaderboard.build(root, n_resamples=200)
    text = leaderboard.render(board, "summary")
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "random_image_ablated ×3" in text and "Full tables with CIs" in text


# ----------------------------------------------------------------------------------------------- plain lmms_eval runs

TOY = Path(__file__).resolve().parents[1] / "narrowgate" / "assets" / "toy_chameleon"
RUN_LIMIT = 6
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def lmms_eval(*args, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "lmms_eval"), *map(str, args)]
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def lmms_eval_runs(tmp_path_factory):
    """The toy Chameleon under four conditions through the real `lmms_eval` command (three runs in one
    call, then gate_only with lmms-eval's own `--baseline` paired test), each into its own folder."""
    import yaml

    out = tmp_path_factory.mktemp("lmms_eval_runs")
    runs = [
        {
            "model": f"chameleon_{condition}",
            "model_args": f"pretrained={TOY}",
            "tasks": VQA,
            "limit": RUN_LIMIT,
            "output_path": str(out / condition),
            "log_samples": True,
        }
        for condition in ("baseline", "gate_ablated", "image_ablated")
    ]
    (out / "runs.yaml").write_text(yaml.safe_dump(runs))
    lmms_eval("--config", out / "runs.yaml", cwd=out)
    (baseline_samples,) = (out / "baseline").glob(f"*/*_samples_{VQA}.jsonl")
    lmms_eval(
        *("--model", "chameleon_gate_only", "--model_args", f"pretrained={TOY}", "--tasks", VQA),
        *("--limit", RUN_LIMIT, "--output_path", out / "gate_only", "--log_samples", "--baseline", baseline_samples),
        cwd=out,
    )
    return out


def samples_scores(folder: Path) -> dict[int, float]:
    (path,) = folder.glob(f"*/*_samples_{VQA}.jsonl")
    return {s["doc_id"]: s["vqa_accuracy"] for s in map(json.loads, path.read_text().splitlines())}


def test_leaderboard_of_plain_lmms_eval_runs(lmms_eval_runs, capsys):
    scores = {c: samples_scores(lmms_eval_runs / c) for c in ("baseline", "gate_ablated", "gate_only", "image_ablated")}
    board = leaderboard.build(lmms_eval_runs, n_resamples=500)
    assert [(r.model, r.condition, r.seeds) for r in board.rows] == [
        ("toy_chameleon", c, 1) for c in ("baseline", "gate_ablated", "gate_only", "image_ablated")
    ]
    column = leaderboard.Column(VQA, "vqa_accuracy")
    assert board.columns == [column]
    docs = sorted(scores["baseline"])
    assert docs == list(range(RUN_LIMIT))
    for row in board.rows:
        entry = row.entries[column]
        assert entry.value == pytest.approx(np.mean([scores[row.condition][d] for d in docs]), abs=1e-12)
        if row.condition != "baseline":
            expected = np.mean([scores[row.condition][d] - scores["baseline"][d] for d in docs])
            assert entry.delta.delta == pytest.approx(expected, abs=1e-12) and entry.delta.n == RUN_LIMIT
    base, gate, only, cut = (
        [scores[c][d] for d in docs] for c in ("baseline", "gate_ablated", "gate_only", "image_ablated")
    )
    (share,) = board.shares
    assert share.through.ratio == pytest.approx(leaderboard.gate_share(base, gate, cut).ratio)
    assert share.bypass.ratio == pytest.approx(leaderboard.gate_share(base, only, cut).ratio)
    assert main(["leaderboard", str(lmms_eval_runs), "--resamples", "200"]) == 0
    assert "gate share (smoke_vqa vqa_accuracy): through" in capsys.readouterr().out


def test_lmms_eval_baseline_paired_test_reads_the_task_scores(lmms_eval_runs):
    """score_key: lmms-eval's own --baseline compares per-document VQA accuracy, not exact match."""
    (results_path,) = (lmms_eval_runs / "gate_only").glob("*/*_results.json")
    result = json.loads(results_path.read_text())["results"][VQA]
    base = samples_scores(lmms_eval_runs / "baseline")
    assert result["paired_baseline_score"] == pytest.approx(100 * np.mean(list(base.values())), abs=1e-9)
    assert 0 <= result["paired_pvalue"] <= 1
    assert json.loads(results_path.read_text())["configs"][VQA]["score_key"] == "vqa_accuracy"


def test_lmms_eval_baseline_loader_reads_the_vqa_accuracy_not_exact_match(tmp_path):
    """lmms-eval reads a --baseline file's score from its first field named *score*; the task gives one."""
    from lmms_eval.baselines.loader import load_baseline

    from narrowgate_tasks import utils

    doc = {"question_id": 1, "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(["2 dogs"] + ["two"] * 9)]}
    sample = {
        "doc_id": 0,
        "target": "2 dogs",
        "filtered_resps": ["2 dogs"],
        **utils.vqa_process_results(doc, ["2 dogs"]),
    }
    path = tmp_path / f"x_samples_{VQA}.jsonl"
    path.write_text(json.dumps(sample) + "\n")
    assert load_baseline(str(path), VQA)[0] == {0: pytest.approx(0.3)}  # exact match would say 1.0


def test_runs_without_narrowgate_records_are_noted(lmms_eval_runs, tmp_path):
    import shutil

    shutil.copytree(lmms_eval_runs / "baseline", tmp_path / "baseline")
    (samples,) = (tmp_path / "baseline").glob(f"*/*_samples_{VQA}.jsonl")
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps({k: v for k, v in s.items() if k != "narrowgate"}) + "\n" for s in lines))
    with pytest.raises(ValueError, match="nothing to tabulate under"):
        leaderboard.build(tmp_path)


def test_unfinished_grid_cells_are_not_read_as_plain_runs(tmp_path):
    """A grid cell moved into place but not yet marked done (a crash in between) is not a result."""
    write_cell(tmp_path, "A", BASE, VQA, (0, 0, 0), {"exact_match": [1.0, 0.0]}, {"exact_match": 0.5})
    folder = write_cell(tmp_path, "A", GATE, VQA, (0, 1, 0), {"exact_match": [0.0, 0.0]}, {"exact_match": 0.0})
    (folder / "cell.json").unlink()
    (samples,) = folder.glob("*/*_samples_*.jsonl")
    audit = {"model": "chameleon_gate_ablated", "pretrained": "/x/toy", "condition": {"name": "gate_ablated"}}
    lines = [{**json.loads(line), "narrowgate": audit} for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "grid.json").write_text(json.dumps({"cells": []}))
    assert [(r.model, r.condition) for r in leaderboard.build(tmp_path, n_resamples=100).rows] == [("A", "baseline")]
    (tmp_path / "grid.json").unlink()  # not a grid folder: the same files are a plain lmms_eval run
    rows = [(r.model, r.condition) for r in leaderboard.build(tmp_path, n_resamples=100).rows]
    assert rows == [("A", "baseline"), ("toy", "gate_ablated")]
