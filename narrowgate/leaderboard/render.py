"""The renderings of the table: Markdown, CSV and LaTeX here, the HTML page and the terminal summary in
their own files; ``render`` picks one by name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytablewriter
from pytablewriter.style import Style

from narrowgate.core.files import write_atomic
from narrowgate.leaderboard.formatting import (
    SHARE_HEADERS,
    condition_text,
    delta_text,
    legend,
    number,
    share_cells,
    share_legend,
    share_reasons,
    signed,
    value_text,
)
from narrowgate.leaderboard.html import render_html
from narrowgate.leaderboard.table import Leaderboard, Row
from narrowgate.leaderboard.terminal import summary_text

FORMATS = ("summary", "md", "csv", "html", "latex")


def render(board: Leaderboard, fmt: str) -> str:
    """The terminal summary (``terminal.py``) or the full table: Markdown, CSV, a self-contained HTML page
    (with the bar chart inline) or LaTeX."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return {"summary": summary_text, "md": _markdown, "csv": _csv, "html": render_html, "latex": _latex}[fmt](board)


def _markdown(board: Leaderboard) -> str:
    table = _md_table(
        ["model", "condition", *(c.label for c in board.columns)],
        [[row.model, condition_text(row), *_entry_texts(board, row)] for row in board.rows],
    )
    parts = [table, "", legend(board)]
    if board.shares:
        parts += ["", _md_table(SHARE_HEADERS, [share_cells(s) for s in board.shares]), "", share_legend(board)]
        parts += share_reasons(board)
    return "\n".join([*parts, *board.notes]) + "\n"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: the first two columns (names) left-aligned, the numbers right-aligned."""
    writer = pytablewriter.MarkdownTableWriter(
        headers=headers,
        value_matrix=rows,
        margin=1,
        column_styles=[Style(align="left")] * 2 + [Style(align="right")] * (len(headers) - 2),
    )
    return writer.dumps().rstrip("\n")


def _entry_texts(board: Leaderboard, row: Row) -> list[str]:
    texts = []
    for column in board.columns:
        entry = row.entries.get(column)
        delta = "" if entry is None else delta_text(entry)
        texts.append("–" if entry is None else value_text(entry) + (f" ({delta})" if delta else ""))
    return texts


def _csv(board: Leaderboard) -> str:
    """One line per row; per metric: value, std over seeds, Δ, its CI, p and the number of documents."""
    records = []
    for row in board.rows:
        record = {"model": row.model, "condition": row.condition, "seeds": row.seeds}
        for column in board.columns:
            entry = row.entries.get(column)
            d = entry.delta if entry is not None else None
            values = {
                "value": None if entry is None else entry.value,
                "std": None if entry is None else entry.std,
                "delta": d.delta if d is not None else (None if entry is None else entry.plain_delta),
                "ci_low": d and d.ci_low,
                "ci_high": d and d.ci_high,
                "p": d and d.p_value,
                "n": d and d.n,
            }
            record.update({f"{column.task}:{column.metric}:{part}": v for part, v in values.items()})
        records.append(record | _share_record(board, row.model))
    return pd.DataFrame(records, dtype=object).to_csv(index=False, lineterminator="\n")


def _share_record(board: Leaderboard, model: str) -> dict:
    """The model's gate shares per task, on each of its rows: the image effect with its CI, each share
    with its CI and the resamples left out for a zero effect, or ``defined`` False with the reason."""
    record = {}
    for share in (s for s in board.shares if s.model == model):
        prefix = f"gate_share:{share.task}:{share.metric}"
        effect = share.image_effect
        record |= {
            f"{prefix}:image_effect": effect.delta,
            f"{prefix}:image_effect_ci_low": effect.ci_low,
            f"{prefix}:image_effect_ci_high": effect.ci_high,
            f"{prefix}:defined": share.defined,
            f"{prefix}:undefined_reason": share.undefined,
        }
        for name in ("through", "bypass"):
            ratio = getattr(share, name)
            record |= {
                f"{prefix}:{name}": ratio and ratio.ratio,
                f"{prefix}:{name}_ci_low": ratio and ratio.ci_low,
                f"{prefix}:{name}_ci_high": ratio and ratio.ci_high,
                f"{prefix}:{name}_resamples_left_out": ratio and ratio.undefined,
            }
    return record


def _latex_escape(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
    ):
        text = text.replace(char, escaped)
    return text


def _latex(board: Leaderboard) -> str:
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{tabular}{ll" + "r" * len(board.columns) + "}",
        r"\toprule",
        " & ".join(["Model", "Condition", *(_latex_escape(c.label) for c in board.columns)]) + r" \\",
        r"\midrule",
    ]
    for row in board.rows:
        cells = [
            _latex_escape(row.model),
            _latex_escape(condition_text(row).replace("×", "x")),
        ]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                cells.append("--")
                continue
            text = f"${number(entry.value)}" + (rf" \pm {number(entry.std)}" if entry.std is not None else "") + "$"
            if entry.delta is not None:
                d = entry.delta
                p = r"p<0.001" if d.p_value < 0.001 else f"p={d.p_value:.3f}"
                text += rf" ($\Delta {signed(d.delta)}$ [${signed(d.ci_low)}$, ${signed(d.ci_high)}$], ${p}$)"
            elif entry.plain_delta is not None:
                text += rf" ($\Delta {signed(entry.plain_delta)}$)"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if board.shares:
        lines += ["", *_latex_shares(board)]
    return "\n".join(lines) + "\n"


def _latex_shares(board: Leaderboard) -> list[str]:
    """The gate-share table; an undefined share says so, with the reason in a row below it."""
    lines = [
        r"\begin{tabular}{llrrr}",
        r"\toprule",
        " & ".join(_latex_escape(h.capitalize()) for h in SHARE_HEADERS) + r" \\",
        r"\midrule",
    ]
    for share in board.shares:
        lines.append(" & ".join(_latex_escape(text) for text in share_cells(share)) + r" \\")
        if not share.defined:
            lines.append(
                rf"\multicolumn{{5}}{{l}}{{\footnotesize {_latex_escape(share.undefined.replace('−', '-'))}}} \\"
            )
    lines += [r"\bottomrule", r"\end{tabular}", "% " + share_legend(board).replace("−", "-")]
    return lines


def write(board: Leaderboard, fmt: str, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, render(board, fmt).encode("utf-8"))
    return path
