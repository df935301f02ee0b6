"""The grouped bar chart per task (PNG)."""

from __future__ import annotations

import io
from pathlib import Path

from narrowgate.core.files import write_atomic
from narrowgate.leaderboard.table import Column, Leaderboard, Row


def plot_png(board: Leaderboard) -> bytes:
    """A grouped bar chart per task (its first metric): models on the x axis, one bar per condition;
    error bars are the std over seeds of repeated conditions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(board.primary)
    models = list(dict.fromkeys(r.model for r in board.rows))
    conditions = list(dict.fromkeys(r.condition for r in board.rows))
    rows = {(r.model, r.condition): r for r in board.rows}
    width = 0.8 / len(conditions)
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(tasks),
        1,
        figsize=(
            max(6.0, 1.2 * len(models) * max(1, len(conditions)) / 3 + 2),
            3.2 * len(tasks),
        ),
        squeeze=False,
    )
    for ax, task in zip(axes[:, 0], tasks):
        column = Column(task, board.primary[task])
        tops, bottoms = [0.0], [0.0]
        for j, condition in enumerate(conditions):
            xs, heights, errors = [], [], []
            for i, model in enumerate(models):
                entry = rows.get((model, condition), Row(model, condition, 0, {})).entries.get(column)
                if entry is None:
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(entry.value)
                errors.append(entry.std)
            if xs:
                yerr = None if all(e is None for e in errors) else [e or 0.0 for e in errors]
                tops.extend(h + (e or 0.0) for h, e in zip(heights, errors))
                bottoms.extend(h - (e or 0.0) for h, e in zip(heights, errors))
                ax.bar(
                    xs,
                    heights,
                    width,
                    yerr=yerr,
                    capsize=3,
                    label=condition,
                    color=colours(j % 10),
                )
        ax.set_title(column.label)
        ax.set_xticks(range(len(models)), models)
        ax.set_xlim(-0.5, len(models) - 0.5)
        span = max(tops) - min(bottoms)  # ~0 for a random-weight model: show the 0..1 range, not float noise
        ax.set_ylim(
            min(0.0, min(bottoms) - 0.1 * span),
            max(tops) + 0.15 * span if span > 1e-6 else 1.0,
        )
        ax.set_ylabel(column.metric)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncols=min(4, len(conditions)),
        fontsize="small",
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(conditions) - 1) // 4), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_plot(board: Leaderboard, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, plot_png(board))
    return path
