"""The table: one row per model x condition, Δ from the model's baseline with a paired bootstrap."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from narrowgate.core.stats import PairedDelta, paired_bootstrap
from narrowgate.grid import GRID_FILE
from narrowgate.leaderboard.collect import (
    BASELINE,
    mean_over_seeds,
    paired_scores,
    read_cells,
)
from narrowgate.leaderboard.scores import CellResult
from narrowgate.leaderboard.summary import IMAGE_ABLATED, SHARES, GateShare, gate_shares


@dataclass(frozen=True)
class Column:
    task: str
    metric: str

    @property
    def label(self) -> str:
        return f"{self.task} {self.metric}"


@dataclass(frozen=True)
class Entry:
    """One table entry: the metric (mean over seeds), its std over seeds, and the change from baseline."""

    value: float
    std: float | None
    seeds: int
    delta: PairedDelta | None = None  # paired bootstrap, when per-sample scores exist
    plain_delta: float | None = None  # difference of aggregates, when they do not


@dataclass(frozen=True)
class Row:
    model: str
    condition: str
    seeds: int  # 1 for a condition without repeats
    entries: dict[Column, Entry]


@dataclass(frozen=True)
class Leaderboard:
    source: Path
    columns: list[Column]
    rows: list[Row]
    primary: dict[str, str]  # task -> the metric its bar chart shows
    shares: list[GateShare]  # per model and task: the share of the image's effect through the gate
    notes: list[str]
    n_resamples: int
    confidence: float


def build(
    directory: str | Path,
    *,
    metrics: list[str] | None = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Leaderboard:
    """Read a grid or lmms_eval output folder and compute the table; ``metrics`` keeps only these metric
    names (or TASK:METRIC)."""
    notes: list[str] = []
    cells = read_cells(directory, notes)
    cells.sort(key=lambda c: (c.order, -1 if c.seed is None else c.seed))

    columns: list[Column] = []
    for cell in sorted(cells, key=lambda c: c.order[2]):
        for metric in cell.metrics:
            column = Column(cell.task, metric)
            if column not in columns and _wanted(column, metrics):
                columns.append(column)
    if not columns:
        available = sorted({f"{c.task}:{m}" for c in cells for m in c.metrics})
        raise ValueError(f"--metrics {','.join(metrics or [])} selects nothing; available: {', '.join(available)}")
    primary = {}
    for column in columns:
        primary.setdefault(column.task, column.metric)

    groups: dict[tuple[str, str], dict[str, list[CellResult]]] = {}  # (model, condition label) -> task -> cells
    for cell in cells:
        groups.setdefault((cell.model, cell.condition), defaultdict(list))[cell.task].append(cell)
    rows = []
    for (model, condition), by_task in groups.items():
        baseline = _baseline_of(model, groups)
        entries = {}
        for column in columns:
            group = [c for c in by_task.get(column.task, []) if column.metric in c.metrics]
            if not group:
                continue
            base = None
            if baseline is not None and condition != baseline:
                base = [c for c in groups[(model, baseline)].get(column.task, []) if column.metric in c.metrics]
            entries[column] = _entry(group, base, column, n_resamples, confidence, seed, notes)
        seeds = max((len(v) for v in by_task.values()), default=1)
        rows.append(Row(model, condition, seeds, entries))
    for model in dict.fromkeys(r.model for r in rows):
        if _baseline_of(model, groups) is None:
            notes.append(f"{model} has no {BASELINE!r} condition, so its rows show no Δ.")
    shares = [
        share
        for model in dict.fromkeys(r.model for r in rows)
        for task in dict.fromkeys(c.task for c in columns)
        if (share := _shares(model, task, groups, columns, n_resamples, confidence, seed)) is not None
    ]
    notes.extend(_grid_notes(Path(directory)))
    return Leaderboard(
        Path(directory),
        columns,
        rows,
        primary,
        shares,
        list(dict.fromkeys(notes)),
        n_resamples,
        confidence,
    )


def _shares(model, task, groups, columns, n_resamples, confidence, seed) -> GateShare | None:
    """``summary.gate_shares`` on the task's first metric with per-sample scores; the share conditions are
    the rows labelled with their plain condition names, the baseline is the model's baseline row."""
    baseline = _baseline_of(model, groups)
    runs = {name: groups.get((model, name), {}).get(task, []) for name in (IMAGE_ABLATED, *SHARES.values())}
    runs = {name: cells for name, cells in runs.items() if cells and cells[0].condition_name == name}
    if baseline is not None and groups[(model, baseline)].get(task):
        runs[BASELINE] = groups[(model, baseline)][task]
    scored = [
        c.metric for c in columns if c.task == task and all(c.metric in x.scores for r in runs.values() for x in r)
    ]
    if not scored:
        return None
    return gate_shares(model, runs, scored[0], task, n_resamples=n_resamples, confidence=confidence, seed=seed)


def _wanted(column: Column, metrics: list[str] | None) -> bool:
    return not metrics or column.metric in metrics or f"{column.task}:{column.metric}" in metrics


def _baseline_of(model: str, groups) -> str | None:
    """The model's baseline row: the label of its condition named ``baseline`` (None if it has none)."""
    labels = {}
    for (m, label), by_task in groups.items():
        if m == model:
            names = {c.condition_name for cells in by_task.values() for c in cells}
            if BASELINE in names:
                labels[label] = by_task
    if len(labels) > 1:
        raise ValueError(f"{model} has several baseline conditions ({', '.join(labels)}); keep one to compare against")
    return next(iter(labels), None)


def _entry(
    group,
    base,
    column: Column,
    n_resamples: int,
    confidence: float,
    seed: int,
    notes: list[str],
) -> Entry:
    values = [c.metrics[column.metric] for c in group]
    value = sum(values) / len(values)
    std = _sample_std(values) if len(group) > 1 else None
    if not base:
        return Entry(value, std, len(group))
    base_value = sum(c.metrics[column.metric] for c in base) / len(base)
    if not all(column.metric in c.scores for c in [*group, *base]):
        return Entry(value, std, len(group), plain_delta=value - base_value)
    treated = mean_over_seeds(group, column.metric)
    baseline = mean_over_seeds(base, column.metric)
    base_scores, treated_scores = paired_scores([(base, baseline), (group, treated)], column.task)
    delta = paired_bootstrap(
        base_scores,
        treated_scores,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    for cell in [*group, *base]:
        mean = sum(cell.scores[column.metric].values()) / len(cell.scores[column.metric])
        if abs(mean - cell.metrics[column.metric]) > 1e-6 * max(1.0, abs(mean)):
            notes.append(
                f"{column.label}: the aggregate is not the mean of the per-sample scores, so Δ and its "
                f"interval refer to the mean per-sample score."
            )
            break
    return Entry(value, std, len(group), delta=delta)


def _sample_std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _grid_notes(directory: Path) -> list[str]:
    grid_file = directory / GRID_FILE
    if not grid_file.is_file():
        return []
    cells = json.loads(grid_file.read_text(encoding="utf-8")).get("cells", [])
    failed = [c["cell"] for c in cells if c.get("status") == "failed"]
    pending = [c["cell"] for c in cells if c.get("status") == "pending"]
    notes = []
    if failed:
        notes.append(f"{len(failed)} cell(s) failed and are missing: {', '.join(failed)} (see {grid_file}).")
    if pending:
        notes.append(f"{len(pending)} cell(s) never finished and are missing: {', '.join(pending)}.")
    return notes
