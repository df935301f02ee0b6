"""The study's figures in ``OUTPUT/plots/``.

One at a time: one figure per factor (``<factor>.png``), each measure against the factor's levels; seeds
are points, the mean carries error bars (gate shares: the two-level 95% CI; the other measures: the range
over seeds); the base level is shaded and the shipped reference toys are dashed lines.

Factorial: ``main_effects.png``, one panel per measure and one line per factor, its levels first listed
to last with each level's mean over runs and 95% t interval (``effects.py``); ``learning_curves.png``, one
panel per cell, the teacher-forced accuracy against the training step, one line per seed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from narrowgate.core.files import write_atomic
from narrowgate.study import effects
from narrowgate.study.measures import read
from narrowgate.study.plan import BASE, Study, level_name

PLOTS_DIR = "plots"
# column -> (title, kind of error bar)
MEASURES = {
    "baseline": ("baseline score", "range"),
    "through": ("gate share: through", "ci"),
    "bypass": ("gate share: bypass", "ci"),
    "attention_gate": ("attention to the gate", "range"),
    "flip_fraction": ("patching flip fraction", "range"),
}


def _points(row: pd.Series, column: str) -> list[float]:
    """The per-seed values of a measure (NaN: undefined for that seed)."""
    return [float(v) for v in row[f"{column}_per_seed"].split()]


def _center_and_bar(row: pd.Series, column: str, kind: str) -> tuple[float, float, float]:
    """(mean, low, high): the CI columns of a share, else the range of the per-seed values."""
    if kind == "ci":
        return row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    points = [p for p in _points(row, column) if not math.isnan(p)]
    if not points:
        return math.nan, math.nan, math.nan
    return sum(points) / len(points), min(points), max(points)


def _level_order(levels: list, base):
    """Sort key of (level name, row): by value when every level is a number, else the config's order
    with the base level first."""
    values = {level_name(v): v for v in [base, *levels]}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        return lambda item: values[item[0]]
    order = list(values)
    return lambda item: order.index(item[0])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_factor(frame: pd.DataFrame, study: Study, factor: str, task: str | None):
    """The figure of one factor on one task (None: each cell's own task): the base cell at the base level,
    then each level's cell."""
    plt = _pyplot()
    of_task = frame if task is None else frame[frame["task"] == task]
    base_name = level_name(study.base_level(factor))
    cells = [(base_name, of_task[of_task["cell"] == BASE].iloc[0])]
    cells += [(row["level"], row) for _, row in of_task[of_task["factor"] == factor].iterrows()]
    cells.sort(key=_level_order(study.factors[factor], study.base_level(factor)))
    references = of_task[of_task["factor"] == "reference"]

    figure, axes = plt.subplots(1, len(MEASURES), figsize=(3.0 * len(MEASURES), 3.0), squeeze=False)
    for ax, (column, (title, kind)) in zip(axes[0], MEASURES.items()):
        for x, (level, row) in enumerate(cells):
            points = _points(row, column)
            ax.scatter([x + 0.08 * (i - (len(points) - 1) / 2) for i in range(len(points))], points, s=14, color="grey", zorder=2)
            center, low, high = _center_and_bar(row, column, kind)
            if not math.isnan(center):
                ax.errorbar([x], [center], yerr=[[center - low], [high - center]], fmt="o", color="C0", capsize=4, zorder=3)
            if level == base_name:
                ax.axvspan(x - 0.4, x + 0.4, color="C1", alpha=0.15, lw=0)
        for i, (_, ref) in enumerate(references.iterrows()):
            value = _center_and_bar(ref, column, kind)[0]
            if not math.isnan(value):
                ax.axhline(value, color=f"C{2 + i}", linestyle="--", lw=1, label=ref["level"])
        ax.set_xticks(range(len(cells)), [level for level, _ in cells])
        ax.set(title=title, xlabel=factor, xlim=(-0.6, len(cells) - 0.4))
        if column in ("through", "bypass"):
            ax.axhline(0, color="black", lw=0.5)
    if len(references):
        axes[0][-1].legend(fontsize=7, title="reference", title_fontsize=7)
    figure.suptitle(
        f"{factor} ({task or 'each cell on its own task'}; base level shaded; points: seeds; bars: 95% CI for shares, "
        "range otherwise)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def plot_main_effects(values: dict[str, dict[str, dict[str, list[float]]]], task: str):
    """One panel per measure, one line per factor: each level's mean over runs with its 95% t interval."""
    plt = _pyplot()
    columns = 3
    rows = math.ceil(len(effects.MEASURES) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.0 * rows), squeeze=False)
    width = max(len(levels) for levels in values.values())
    for ax, (measure, title) in zip(axes.flat, effects.MEASURES.items()):
        for i, (factor, at) in enumerate(values.items()):
            offset = 0.06 * (i - (len(values) - 1) / 2)  # side by side, so that the intervals do not hide each other
            stats = [effects.mean_ci(at[level][measure]) for level in at]
            xs = [x + offset for x in range(len(stats))]
            means = [m for m, _, _ in stats]
            errors = [[m - lo if not math.isnan(lo) else 0 for m, lo, _ in stats], [hi - m if not math.isnan(hi) else 0 for m, _, hi in stats]]
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, lw=1.2, label=f"{factor}: {' → '.join(at)}", color=f"C{i}")
        ax.set(title=title, xlim=(-0.4, width - 0.6))
        ax.set_xticks(range(width), [f"level {j + 1}" for j in range(width)])  # the legend names each factor's levels
    for ax in axes.flat[len(effects.MEASURES) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    figure.suptitle(f"Main effects ({task}): mean over runs at each level, 95% t interval", fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def plot_learning_curves(study: Study, output: Path):
    """One panel per cell: teacher-forced accuracy on unseen drawings against the step, one line per seed."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    cells: dict[str, list] = {}
    for run in study.runs:
        cells.setdefault(run.cell, []).append(run)
    columns = min(4, len(cells))
    rows = math.ceil(len(cells) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False, sharey=True)
    for ax, (cell, runs) in zip(axes.flat, cells.items()):
        for run in runs:
            curve = read(run, output, "curve")
            ax.plot(curve["step"], curve["accuracy"], lw=0.8, label=f"seed {run.seed}")
        ax.set_title("\n".join(cell.split("+")), fontsize=8)
        ax.set(ylim=(-0.02, 1.02), xlabel="step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes.flat[len(cells) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("Learning curves: teacher-forced answer accuracy on unseen drawings", fontsize=10)
    figure.tight_layout()
    return figure


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
    return path


def write_plots(frame: pd.DataFrame, study: Study, output: Path) -> list[Path]:
    """The design's PNGs, written atomically: one at a time, one per factor (per factor and task when the
    study lists several tasks); factorial, the main effects (per task when several) and the learning curves."""
    folder = output / PLOTS_DIR
    if study.factorial:
        by_task = effects.level_values(study, output)
        paths = [
            _save(plot_main_effects(values, task), folder / ("main_effects.png" if len(by_task) == 1 else f"main_effects-{task}.png"))
            for task, values in by_task.items()
        ]
        return [*paths, _save(plot_learning_curves(study, output), folder / "learning_curves.png")]
    tasks = [None] if study.own_tasks else list(study.file.tasks)
    return [
        _save(plot_factor(frame, study, factor, task), folder / f"{factor}{'' if len(tasks) == 1 else f'-{task}'}.png")
        for factor in study.factors
        for task in tasks
    ]
