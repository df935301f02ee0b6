"""One finished cell's numbers, as read from lmms-eval's files: its aggregate metrics (results json)
and per-document scores (samples jsonl), whether the cell comes from a grid or a plain lmms_eval run."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
