"""Running a sweep: its windows become the conditions of a one-model, one-task grid (``run_grid``: the
conditions side by side in one batched pass, one lmms-eval run per window, resumable), and the
leaderboard's paired bootstrap gives each window's change from the baseline."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narrowgate.grid import ConfigError, GridConfig, GridReport, ModelSpec, run_grid
from narrowgate.sweep.plan import Window, condition_specs

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Sweep:
    """One condition (``name`` with ``options``) over ``windows`` of one model, on one task."""

    model: ModelSpec
    task: str
    name: str
    windows: tuple[Window, ...]
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None

    def grid(self, output: Path) -> GridConfig:
        """The grid that runs the sweep: the baseline and one condition per window."""
        conditions = condition_specs(self.name, self.options, self.windows)
        description = f"sweep of {self.name} {self.options} over {len(self.windows)} windows"
        return GridConfig(output / SWEEP_FILE, description, (self.task,), tuple(conditions), (self.model,), self.limit)

    def record(self) -> dict[str, Any]:
        return {
            "model": self.model.record(),
            "task": self.task,
            "condition": self.name,
            "options": dict(self.options),
            "limit": self.limit,
            "windows": [{"label": w.label, "size": w.size, "start": w.start, "layers": w.layers, "head": w.head} for w in self.windows],
        }


@dataclass(frozen=True)
class WindowResult:
    """One window's score and its paired change from the baseline (``narrowgate.stats.PairedDelta``)."""

    window: Window
    score: float
    delta: Any  # PairedDelta


@dataclass(frozen=True)
class SweepResult:
    sweep: Sweep
    metric: str
    baseline: float
    windows: list[WindowResult]
    report: GridReport
    confidence: float


def model_shape(pretrained: str) -> tuple[int, int]:
    """(decoder layers, attention heads) of a checkpoint's language model, from its config alone."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(pretrained).get_text_config()
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the model config of {pretrained}: {error}") from None
    return config.num_hidden_layers, config.num_attention_heads


def run_sweep(
    sweep: Sweep,
    output: str | os.PathLike,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    verbosity: str = "WARNING",
    max_rows: int | None = None,
) -> SweepResult:
    """Evaluate the sweep's pending windows (done ones are kept: rerun to resume) and compare each with
    the baseline on the same documents. A window whose cell failed raises after the others ran."""
    from narrowgate.core.files import write_json_atomic
    from narrowgate.leaderboard import Column, build

    output = Path(output)
    config = sweep.grid(output)
    report = run_grid(config, output, log=log, verbosity=verbosity, max_rows=max_rows)
    write_json_atomic(output / SWEEP_FILE, sweep.record())
    if report.failed:
        failed = "; ".join(f"{s.cell}: {s.error}" for s in report.failed)
        raise RuntimeError(f"{len(report.failed)} window(s) failed ({failed}); details in {output / 'grid.json'}")
    board = build(output, n_resamples=n_resamples, confidence=confidence, seed=seed)
    metric = board.primary[sweep.task]
    column = Column(sweep.task, metric)
    entries = {row.condition: row.entries.get(column) for row in board.rows if row.model == sweep.model.name}
    windows = []
    for window in sweep.windows:
        entry = entries[window.label]
        if entry.delta is None:
            raise ValueError(f"{sweep.task} {metric} has no per-sample scores, so a sweep cannot give intervals on it")
        windows.append(WindowResult(window, entry.value, entry.delta))
    return SweepResult(sweep, metric, entries["baseline"].value, windows, report, confidence)
