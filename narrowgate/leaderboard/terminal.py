"""The terminal summary: each model's conditions with the primary metric per task and its change from
baseline, then the model's gate share; every line fits ``width`` columns (the full tables go to files)."""

from __future__ import annotations

import textwrap

from narrowgate.leaderboard.formatting import effect_text, number, ratio_text, signed
from narrowgate.leaderboard.table import Column, Entry, Leaderboard

TASK_PREFIX = "narrowgate_"
INDENT = "  "


def summary_text(board: Leaderboard, width: int = 100) -> str:
    """Rows grouped by model; a column per task (its primary metric): value, Δ and ``*`` when p < 1 − CI."""
    alpha = 1 - board.confidence
    names = [f"{r.condition} ×{r.seeds}" if r.seeds > 1 else r.condition for r in board.rows]
    name_width = min(max(len(n) for n in names) + 2, 28)
    column_width = 16
    fit = max(1, (width - len(INDENT) - name_width) // column_width)
    columns = [Column(task, metric) for task, metric in board.primary.items()]
    shown, hidden = columns[:fit], columns[fit:]

    def cell(text: str) -> str:
        return _clip(text, column_width - 1).ljust(column_width)

    lines = [
        " " * (len(INDENT) + name_width) + "".join(cell(c.task.removeprefix(TASK_PREFIX)) for c in shown),
        " " * (len(INDENT) + name_width) + "".join(cell(c.metric) for c in shown),
    ]
    shares = {}
    for share in board.shares:
        shares.setdefault(share.model, []).append(share)
    for model in dict.fromkeys(r.model for r in board.rows):
        lines.append(_clip(model, width))
        for row, name in zip(board.rows, names):
            if row.model == model:
                entries = [_entry_text(row.entries.get(c), alpha) for c in shown]
                lines.append(INDENT + _clip(name, name_width - 1).ljust(name_width) + "".join(map(cell, entries)))
        for share in shares.get(model, []):
            text = f"gate share ({share.task.removeprefix(TASK_PREFIX)} {share.metric}): " + (
                f"through {ratio_text(share.through)}, bypassing {ratio_text(share.bypass)}; image effect "
                f"{effect_text(share)}"
                if share.defined
                else f"undefined: {share.undefined}"
            )
            lines += textwrap.wrap(text, width, initial_indent=INDENT, subsequent_indent=INDENT * 2)
    legend = (
        f"Value and Δ from the model's baseline; * p < {alpha:g} (paired bootstrap over documents). "
        "Gate share: the share of the image's effect (baseline − image_ablated) that blocking the gate "
        "removes (through) and that cutting every image token but the gate removes (bypassing); "
        "near 1 and 0 for a narrow gate; not bounded to [0, 1], undefined where the image effect's CI "
        "contains 0."
    )
    if hidden:
        legend += f" Not shown here: {', '.join(c.label for c in hidden)}."
    legend += " Full tables with CIs: --format md|csv|html|latex."
    lines.append("")
    for paragraph in [legend, *board.notes]:
        lines += textwrap.wrap(paragraph, width)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _entry_text(entry: Entry | None, alpha: float) -> str:
    if entry is None:
        return "–"
    if entry.delta is not None:
        star = "*" if entry.delta.p_value < alpha else ""
        return f"{number(entry.value)} {signed(entry.delta.delta)}{star}"
    if entry.plain_delta is not None:
        return f"{number(entry.value)} {signed(entry.plain_delta)}"
    return number(entry.value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
