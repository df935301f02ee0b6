"""The self-contained HTML page: the table with significant changes coloured and the bar chart inline."""

from __future__ import annotations

import base64
import html

from narrowgate.leaderboard.formatting import (
    SHARE_HEADERS,
    condition_text,
    delta_text,
    legend,
    share_cells,
    share_legend,
    value_text,
)
from narrowgate.leaderboard.plot import plot_png
from narrowgate.leaderboard.table import Leaderboard

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; } p.meta, p.legend, ul.notes { color: #555; font-size: 0.9rem; max-width: 60rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.7rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.name { text-align: left; white-space: nowrap; }
span.delta { display: block; font-size: 0.8rem; color: #666; }
span.down { color: #b2182b; font-weight: 600; } span.up { color: #2166ac; font-weight: 600; }
img { max-width: 100%; margin-top: 1.5rem; }
"""


def render_html(board: Leaderboard) -> str:
    alpha = 1 - board.confidence
    head = "".join(
        f"<th>{html.escape(text)}</th>" for text in ["model", "condition", *(c.label for c in board.columns)]
    )
    body = []
    for row in board.rows:
        tds = [
            f'<td class="name">{html.escape(row.model)}</td>',
            f'<td class="name">{html.escape(condition_text(row))}</td>',
        ]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                tds.append("<td>–</td>")
                continue
            cls = "delta"
            if entry.delta is not None and entry.delta.p_value < alpha:
                cls += " down" if entry.delta.delta < 0 else " up"
            delta = delta_text(entry)
            tds.append(
                f"<td>{html.escape(value_text(entry))}"
                + (f'<span class="{cls}">{html.escape(delta)}</span>' if delta else "")
                + "</td>"
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
    shares = ""
    if board.shares:
        rows = "\n".join(
            "<tr>"
            + "".join(
                f'<td class="name">{html.escape(text)}</td>' if i < 2 else f"<td>{html.escape(text)}</td>"
                for i, text in enumerate(share_cells(share))
            )
            + "</tr>"
            for share in board.shares
        )
        shares = (
            "<h2>Gate share</h2>\n<table>\n<thead><tr>"
            + "".join(f"<th>{html.escape(text)}</th>" for text in SHARE_HEADERS)
            + f"</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"
            + f'<p class="legend">{html.escape(share_legend(board))}</p>\n'
        )
    image = base64.b64encode(plot_png(board)).decode("ascii")
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in board.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>narrowgate leaderboard</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1>narrowgate leaderboard</h1>\n"
        f'<p class="meta">Grid folder: {html.escape(str(board.source))}</p>\n'
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
        f'<p class="legend">{html.escape(legend(board))} Significant changes (p &lt; {alpha:g}) are coloured.</p>\n'
        + shares
        + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
        + f'<img alt="grouped bar chart per task" src="data:image/png;base64,{image}">\n'
        "</body>\n</html>\n"
    )
