"""Reading finished runs: each cell's aggregate metrics and per-document scores from lmms-eval's files."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narrowgate.grid import iter_done_cells

BASELINE = "baseline"  # the condition every other condition of a model is compared with
SCORE_FIELD = "score"


@dataclass(frozen=True)
class CellResult:
    """One finished cell as read from disk: a grid cell, or one task of a plain lmms_eval run."""

    model: str
    condition: str  # the condition's label (a table row together with the model)
    condition_name: str
    seed: int | None
    task: str
    order: tuple[int, int, int]
    metrics: dict[str, float]  # aggregate per metric, in the task's metric order
    scores: dict[str, dict[Any, float]]  # per-sample score per metric, by doc_id (metrics that have them)
    path: Path


def read_cells(directory: str | Path, notes: list[str]) -> list[CellResult]:
    """Every finished cell under ``directory``: a ``narrowgate grid`` output folder, an ``lmms_eval
    --output_path`` folder of runs with narrowgate models and ``--log_samples``, or both."""
    from narrowgate.leaderboard.runs import read_runs

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


def read_scores(
    results: dict[str, Any], results_path: Path, samples_path: Path, task: str
) -> tuple[dict[str, float], dict[str, dict[Any, float]]]:
    """One task's aggregate metrics (from lmms-eval's results json, the task's own metrics in its order)
    and the per-sample scores of those that have them (from its samples jsonl), by doc_id."""
    if task not in results.get("results", {}):
        raise ValueError(f"{results_path}: no results for task {task!r}")
    listed = [m["metric"] for m in results.get("configs", {}).get(task, {}).get("metric_list", []) if "metric" in m]
    metrics: dict[str, float] = {}
    for key, value in results["results"][task].items():
        name, _, filter_name = key.partition(",")
        if not filter_name or "_stderr" in name or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if listed and name not in listed:  # the task's own metrics only, not lmms-eval's extras
            continue
        metrics[name if filter_name == "none" else key] = float(value)
    metrics = dict(
        sorted(
            metrics.items(),
            key=lambda item: (_rank(item[0].partition(",")[0], listed), item[0]),
        )
    )

    per_sample: dict[str, dict[Any, float]] = defaultdict(dict)
    missing: dict[str, Any] = {}
    for line_no, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        sample = json.loads(line)
        doc_id = sample["doc_id"]
        for metric in metrics:
            name, _, filter_name = metric.partition(",")
            if sample.get("filter", "none") != (filter_name or "none"):
                continue
            score = _sample_score(sample.get(name))
            if score is None:
                missing.setdefault(metric, doc_id)
                continue
            if doc_id in per_sample[metric]:
                raise ValueError(f"{samples_path}:{line_no}: doc_id {doc_id!r} appears twice for metric {metric!r}")
            per_sample[metric][doc_id] = score
    scores = {}
    for metric in metrics:
        if metric in per_sample and metric in missing:
            raise ValueError(
                f"{samples_path}: metric {metric!r} has a per-sample score for some documents but not for doc_id "
                f"{missing[metric]!r}; expected a number or a mapping with a numeric {SCORE_FIELD!r} field"
            )
        if metric in per_sample:
            scores[metric] = per_sample[metric]
    return metrics, scores


def _sample_score(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get(SCORE_FIELD)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _rank(name: str, listed: list[str]) -> int:
    return listed.index(name) if name in listed else len(listed)


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
