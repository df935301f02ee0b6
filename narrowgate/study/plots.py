"""One figure per factor (``OUTPUT/plots/<factor>.png``): each measure against the factor's levels.

Seeds are points; the mean carries error bars (gate shares: the two-level 95% CI; the other measures:
the range over seeds); the base level is shaded and the shipped reference toys are dashed lines.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from narrowgate.core.files import write_atomic
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


def plot_factor(frame: pd.DataFrame, study: Study, factor: str, task: str):
    """The figure of one factor on one task: the base cell at the base level, then each level's cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    of_task = frame[frame["task"] == task]
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
        f"{factor} ({task}; base level shaded; points: seeds; bars: 95% CI for shares, range otherwise)", fontsize=9
    )
    figure.tight_layout()
    return figure


def write_plots(frame: pd.DataFrame, study: Study, output: Path) -> list[Path]:
    """One PNG per factor (per factor and task when the study has several tasks), written atomically."""
    import matplotlib.pyplot as plt

    paths = []
    for factor in study.factors:
        for task in study.file.tasks:
            figure = plot_factor(frame, study, factor, task)
            suffix = "" if len(study.file.tasks) == 1 else f"-{task}"
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=110)
            plt.close(figure)
            path = output / PLOTS_DIR / f"{factor}{suffix}.png"
            write_atomic(path, buffer.getvalue())
            paths.append(path)
    return paths
