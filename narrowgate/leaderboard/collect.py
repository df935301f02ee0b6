"""Reading finished runs: every grid cell and plain lmms_eval run under a folder, and pairing their
per-document scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from narrowgate.grid import iter_done_cells
from narrowgate.leaderboard.runs import read_runs
from narrowgate.leaderboard.scores import CellResult, read_scores

BASELINE = "baseline"  # the condition every other condition of a model is compared with


def read_cells(directory: str | Path, notes: list[str]) -> list[CellResult]:
    """Every finished cell under ``directory``: a ``narrowgate grid`` output folder, an ``lmms_eval
    --output_path`` folder of runs with narrowgate models and ``--log_samples``, or both."""
    found = iter_done_cells(directory)
    cells = [_read_cell(folder, record) for folder, record in found]
    cells += read_runs(
        directory, skip=[folder for folder, _ in found], first_model=len({c.model for c in cells}), notes=notes
    )
    if not cells:
        raise ValueError(
            f"nothing to tabulate under {directory}: no finished grid cells (*/*/*/cell.json, from `narrowgate grid`) "
            f"and no lmms_eval results of narrowgate models with samples (<date>_results.json next to "
            f"<date>_samples_<task>.jsonl, from `lmms_eval ... --output_path DIR --log_samples`)"
        )
    return cells


def _read_cell(folder: Path, record: dict[str, Any]) -> CellResult:
    spec = record["spec"]
    task = spec["task"]
    results_path = folder / record["results"]
    metrics, scores = read_scores(
        json.loads(results_path.read_text(encoding="utf-8")), results_path, folder / record["samples"], task
    )
    condition = spec["condition"]
    return CellResult(
        model=spec["model"]["name"],
        condition=condition["label"],
        condition_name=condition["name"],
        seed=condition.get("seed") if condition.get("repeated") else None,
        task=task,
        order=tuple(record["order"]),
        metrics=metrics,
        scores=scores,
        path=folder,
    )


def mean_over_seeds(cells: list[CellResult], metric: str) -> dict[Any, float]:
    """Each document's score averaged over the cells (repeats of one condition with different seeds)."""
    docs = cells[0].scores[metric].keys()
    for cell in cells[1:]:
        if cell.scores[metric].keys() != docs:
            raise ValueError(f"{cells[0].path} and {cell.path} (repeats of one condition) cover different documents")
    return {d: sum(c.scores[metric][d] for c in cells) / len(cells) for d in docs}


def paired_scores(runs: list[tuple[list[CellResult], dict[Any, float]]], task: str) -> list[list[float]]:
    """Per-document scores of several conditions of one model (each: its cells and ``mean_over_seeds``),
    aligned by document; the first is the reference whose documents the others must share."""
    (ref_cells, ref), *others = runs
    for cells, scores in others:
        if scores.keys() != ref.keys():
            only_t = sorted(scores.keys() - ref.keys(), key=str)[:5]
            only_b = sorted(ref.keys() - scores.keys(), key=str)[:5]
            raise ValueError(
                f"{cells[0].model}: {cells[0].condition} and its {ref_cells[0].condition} were scored on different "
                f"documents for {task} (only in {cells[0].path}: {only_t}; only in {ref_cells[0].path}: {only_b}); "
                f"rerun both with the same --limit"
            )
    docs = sorted(ref, key=str)
    return [[scores[d] for d in docs] for _, scores in runs]
