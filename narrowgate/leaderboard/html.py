"""The self-contained HTML page, the finding first: one verdict line per model, the gate-share table,
then the wide table (scrolling inside its own box, model and condition columns fixed, columns sortable
by a click) and the bar chart inline."""

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
    share_reasons,
    value_text,
    verdict,
)
from narrowgate.leaderboard.plot import plot_png
from narrowgate.leaderboard.table import Leaderboard

NAME_WIDTH = "12rem"  # the fixed model column; the condition column sticks right after it

_CSS = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
p.meta, p.legend, ul.notes {{ color: #555; font-size: 0.9rem; max-width: 60rem; }}
ul.verdicts {{ font-size: 1.05rem; padding-left: 1.2rem; }} ul.verdicts b {{ font-weight: 600; }}
table {{ border-collapse: separate; border-spacing: 0; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35rem 0.7rem; text-align: right; vertical-align: top; background: #fff; }}
th {{ background: #f4f4f4; }} td.name {{ text-align: left; white-space: nowrap; }}
div.wide, div.shares {{ overflow-x: auto; max-width: 100%; }} div.wide {{ border: 1px solid #eee; }}
div.shares td.name {{ white-space: normal; }}
div.wide th {{ cursor: pointer; white-space: nowrap; }}
div.wide th[data-dir="asc"]::after {{ content: " ▲"; }} div.wide th[data-dir="desc"]::after {{ content: " ▼"; }}
div.wide .model, div.wide .condition {{ position: sticky; z-index: 1; text-align: left; box-sizing: border-box; }}
div.wide .model {{ left: 0; width: {NAME_WIDTH}; min-width: {NAME_WIDTH}; max-width: {NAME_WIDTH};
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
div.wide .condition {{ left: {NAME_WIDTH}; white-space: nowrap; border-right: 1px solid #ccc; }}
span.delta {{ display: block; font-size: 0.8rem; color: #666; }}
span.down {{ color: #b2182b; font-weight: 600; }} span.up {{ color: #2166ac; font-weight: 600; }}
img {{ max-width: 100%; margin-top: 1.5rem; }}
"""

# Click a header of the wide table: sort its rows by that column (numbers by value), again to reverse.
_JS = """
document.querySelectorAll("div.wide table").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("thead th").forEach(function (other) { delete other.dataset.dir; });
      th.dataset.dir = dir;
      var key = function (row) {
        var cell = row.cells[column], text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
        var value = parseFloat(text);
        return isNaN(value) ? text : value;
      };
      var body = table.tBodies[0];
      Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return dir === "asc" ? order : -order;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def render_html(board: Leaderboard) -> str:
    alpha = 1 - board.confidence
    e = html.escape
    head = '<th class="model">model</th><th class="condition">condition</th>' + "".join(
        f"<th>{e(c.label)}</th>" for c in board.columns
    )
    body = []
    for row in board.rows:
        tds = [
            f'<td class="name model" title="{e(row.model)}">{e(row.model)}</td>',
            f'<td class="name condition">{e(condition_text(row))}</td>',
        ]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                tds.append('<td data-sort="">–</td>')
                continue
            cls = "delta"
            if entry.delta is not None and entry.delta.p_value < alpha:
                cls += " down" if entry.delta.delta < 0 else " up"
            delta = delta_text(entry)
            tds.append(
                f'<td data-sort="{entry.value!r}">{e(value_text(entry))}'
                + (f'<span class="{cls}">{e(delta)}</span>' if delta else "")
                + "</td>"
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
    models = list(dict.fromkeys(r.model for r in board.rows))
    verdicts = "".join(
        f"<li><b>{e(model)}</b>: {e(verdict([s for s in board.shares if s.model == model]))}</li>" for model in models
    )
    shares = ""
    if board.shares:
        rows = "\n".join(
            "<tr>"
            + "".join(
                f'<td class="name">{e(text)}</td>' if i < 2 else f"<td>{e(text)}</td>"
                for i, text in enumerate(share_cells(share))
            )
            + "</tr>"
            for share in board.shares
        )
        reasons = "".join(f"<br>{e(reason)}" for reason in share_reasons(board))
        shares = (
            '<h2>Gate share</h2>\n<div class="shares"><table>\n<thead><tr>'
            + "".join(f"<th>{e(text)}</th>" for text in SHARE_HEADERS)
            + f"</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table></div>\n"
            + f'<p class="legend">{e(share_legend(board))}{reasons}</p>\n'
        )
    image = base64.b64encode(plot_png(board)).decode("ascii")
    notes = "".join(f"<li>{e(note)}</li>" for note in board.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>narrowgate leaderboard</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1>narrowgate leaderboard</h1>\n"
        f'<ul class="verdicts">{verdicts}</ul>\n'
        + shares
        + "<h2>All conditions and metrics</h2>\n"
        + f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>\n"
        f'<p class="legend">{e(legend(board))} Significant changes (p &lt; {alpha:g}) are coloured. '
        "Click a column's header to sort by it.</p>\n"
        + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
        + f'<img alt="grouped bar chart per task" src="data:image/png;base64,{image}">\n'
        f'<p class="meta">Grid folder: {e(str(board.source))}</p>\n'
        f"<script>{_JS}</script>\n"
        "</body>\n</html>\n"
    )
