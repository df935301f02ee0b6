"""The leaderboard of a grid folder: one row per model x condition, one column per task metric.

Each entry is the metric as lmms-eval aggregated it; rows other than the baseline also show the change
from the same model's baseline (Δ) with a paired bootstrap 95% CI and p-value over documents
(``narrowgate.stats``). Conditions run with several seeds show mean ± std over the seeds (sample std),
and their Δ compares each document's mean over the seeds with its baseline score.

Per-sample scores are read from lmms-eval's samples jsonl: for a metric ``m`` a record must carry
either a number under ``m`` (e.g. VQA accuracy) or a mapping under ``m`` with a numeric ``score``
field (how a caption metric can expose a per-image score next to the data its aggregation needs).
A metric without per-sample scores (e.g. corpus BLEU) gets a Δ of the aggregates and no interval.
Δ and its interval concern the mean per-sample score; when a metric's aggregate is not that mean, the
table says so in a note.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narrowgate.grid import GRID_FILE, iter_done_cells, write_atomic
from narrowgate.stats import PairedDelta, paired_bootstrap

FORMATS = ("md", "csv", "html", "latex")
BASELINE = "baseline"
SCORE_FIELD = "score"


@dataclass(frozen=True)
class CellResult:
    """One finished grid cell as read from disk."""

    model: str
    condition: str  # the condition's label (a table row together with the model)
    condition_name: str
    seed: int | None
    task: str
    order: tuple[int, int, int]
    metrics: dict[str, float]  # aggregate per metric, in the task's metric order
    scores: dict[str, dict[Any, float]]  # per-sample score per metric, by doc_id (metrics that have them)
    path: Path


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
    notes: list[str]
    n_resamples: int
    confidence: float


# ----------------------------------------------------------------------------------------------- reading


def read_cells(directory: str | Path) -> list[CellResult]:
    """Every finished cell under ``directory`` (a ``narrowgate grid`` output folder)."""
    found = iter_done_cells(directory)
    if not found:
        raise ValueError(
            f"no finished grid cells under {directory} (looked for */*/*/cell.json); run `narrowgate grid` first"
        )
    return [_read_cell(folder, record) for folder, record in found]


def _read_cell(folder: Path, record: dict[str, Any]) -> CellResult:
    spec = record["spec"]
    task = spec["task"]
    results = json.loads((folder / record["results"]).read_text(encoding="utf-8"))
    if task not in results.get("results", {}):
        raise ValueError(f"{folder / record['results']}: no results for task {task!r}")
    listed = [m["metric"] for m in results.get("configs", {}).get(task, {}).get("metric_list", []) if "metric" in m]
    metrics: dict[str, float] = {}
    for key, value in results["results"][task].items():
        name, _, filter_name = key.partition(",")
        if not filter_name or "_stderr" in name or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if listed and name not in listed:  # the task's own metrics only, not lmms-eval's extras
            continue
        metrics[name if filter_name == "none" else key] = float(value)
    metrics = dict(sorted(metrics.items(), key=lambda item: (_rank(item[0].partition(",")[0], listed), item[0])))

    per_sample: dict[str, dict[Any, float]] = defaultdict(dict)
    missing: dict[str, Any] = {}
    samples_path = folder / record["samples"]
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
    condition = spec["condition"]
    return CellResult(
        model=spec["model"]["name"],
        condition=condition["label"],
        condition_name=condition["name"],
        seed=condition.get("seed") if condition.get("repeated") else None,
        task=task,
        order=tuple(record["order"]),
        metrics=metrics,
        scores=scores,
        path=folder,
    )


def _sample_score(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get(SCORE_FIELD)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _rank(name: str, listed: list[str]) -> int:
    return listed.index(name) if name in listed else len(listed)


# ----------------------------------------------------------------------------------------------- building


def build(
    directory: str | Path,
    *,
    metrics: list[str] | None = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Leaderboard:
    """Read a grid folder and compute the table. ``metrics`` keeps only these metric names (or TASK:METRIC)."""
    cells = read_cells(directory)
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

    groups: dict[tuple[str, str], dict[str, list[CellResult]]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.condition), defaultdict(list))[cell.task].append(cell)
    notes: list[str] = []
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
    notes.extend(_grid_notes(Path(directory)))
    return Leaderboard(Path(directory), columns, rows, primary, list(dict.fromkeys(notes)), n_resamples, confidence)


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


def _entry(group, base, column: Column, n_resamples: int, confidence: float, seed: int, notes: list[str]) -> Entry:
    values = [c.metrics[column.metric] for c in group]
    value = sum(values) / len(values)
    std = _sample_std(values) if len(group) > 1 else None
    if not base:
        return Entry(value, std, len(group))
    base_value = sum(c.metrics[column.metric] for c in base) / len(base)
    if not all(column.metric in c.scores for c in [*group, *base]):
        return Entry(value, std, len(group), plain_delta=value - base_value)
    treated = _mean_over_seeds(group, column.metric)
    baseline = _mean_over_seeds(base, column.metric)
    if treated.keys() != baseline.keys():
        only_t = sorted(treated.keys() - baseline.keys(), key=str)[:5]
        only_b = sorted(baseline.keys() - treated.keys(), key=str)[:5]
        raise ValueError(
            f"{group[0].model}: {group[0].condition} and its baseline were scored on different documents for "
            f"{column.task} (only in {group[0].path}: {only_t}; only in {base[0].path}: {only_b}); "
            f"rerun both with the same --limit"
        )
    docs = sorted(treated, key=str)
    delta = paired_bootstrap(
        [baseline[d] for d in docs],
        [treated[d] for d in docs],
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


def _mean_over_seeds(cells: list[CellResult], metric: str) -> dict[Any, float]:
    docs = cells[0].scores[metric].keys()
    for cell in cells[1:]:
        if cell.scores[metric].keys() != docs:
            raise ValueError(f"{cells[0].path} and {cell.path} (repeats of one condition) cover different documents")
    return {d: sum(c.scores[metric][d] for c in cells) / len(cells) for d in docs}


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


# ----------------------------------------------------------------------------------------------- rendering


def render(board: Leaderboard, fmt: str) -> str:
    """The table as Markdown, CSV, a self-contained HTML page (with the bar chart inline) or LaTeX."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return {"md": _markdown, "csv": _csv, "html": _html, "latex": _latex}[fmt](board)


def legend(board: Leaderboard) -> str:
    ci = f"{board.confidence:.0%}"
    return (
        f"Δ: change against the same model's baseline; [{ci} CI] and p from a paired bootstrap over documents "
        f"({board.n_resamples} resamples; two-sided). Conditions with several seeds: mean ± std over seeds, "
        f"Δ on each document's mean over seeds. Δ without an interval: no per-sample scores for that metric."
    )


def _number(x: float) -> str:
    return f"{x:.3f}".replace("-0.000", "0.000")


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-0.000", "+0.000")


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _value_text(entry: Entry) -> str:
    return _number(entry.value) + (f" ± {_number(entry.std)}" if entry.std is not None else "")


def _delta_text(entry: Entry) -> str:
    if entry.delta is not None:
        d = entry.delta
        return f"Δ {_signed(d.delta)} [{_signed(d.ci_low)}, {_signed(d.ci_high)}] {_p(d.p_value)}"
    if entry.plain_delta is not None:
        return f"Δ {_signed(entry.plain_delta)}"
    return ""


def _condition_text(row: Row) -> str:
    return f"{row.condition} (×{row.seeds})" if row.seeds > 1 else row.condition


def _markdown(board: Leaderboard) -> str:
    header = ["model", "condition", *(c.label for c in board.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * len(board.columns)) + "|"]
    for row in board.rows:
        cells = [row.model, _condition_text(row)]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                cells.append("–")
                continue
            delta = _delta_text(entry)
            cells.append(_value_text(entry) + (f" ({delta})" if delta else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", legend(board), *board.notes]) + "\n"


def _csv(board: Leaderboard) -> str:
    parts = ("value", "std", "delta", "ci_low", "ci_high", "p", "n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["model", "condition", "seeds", *(f"{c.task}:{c.metric}:{part}" for c in board.columns for part in parts)]
    )
    for row in board.rows:
        line: list[Any] = [row.model, row.condition, row.seeds]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                line.extend([""] * len(parts))
                continue
            d = entry.delta
            delta = d.delta if d is not None else entry.plain_delta
            line.extend(
                [
                    entry.value,
                    "" if entry.std is None else entry.std,
                    "" if delta is None else delta,
                    "" if d is None else d.ci_low,
                    "" if d is None else d.ci_high,
                    "" if d is None else d.p_value,
                    "" if d is None else d.n,
                ]
            )
        writer.writerow(line)
    return out.getvalue()


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
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
        cells = [_latex_escape(row.model), _latex_escape(_condition_text(row).replace("×", "x"))]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                cells.append("--")
                continue
            text = f"${_number(entry.value)}" + (rf" \pm {_number(entry.std)}" if entry.std is not None else "") + "$"
            if entry.delta is not None:
                d = entry.delta
                p = r"p<0.001" if d.p_value < 0.001 else f"p={d.p_value:.3f}"
                text += rf" ($\Delta {_signed(d.delta)}$ [${_signed(d.ci_low)}$, ${_signed(d.ci_high)}$], ${p}$)"
            elif entry.plain_delta is not None:
                text += rf" ($\Delta {_signed(entry.plain_delta)}$)"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } p.meta, p.legend, ul.notes { color: #555; font-size: 0.9rem; max-width: 60rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.7rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.name { text-align: left; white-space: nowrap; }
span.delta { display: block; font-size: 0.8rem; color: #666; }
span.down { color: #b2182b; font-weight: 600; } span.up { color: #2166ac; font-weight: 600; }
img { max-width: 100%; margin-top: 1.5rem; }
"""


def _html(board: Leaderboard) -> str:
    alpha = 1 - board.confidence
    head = "".join(
        f"<th>{html.escape(text)}</th>" for text in ["model", "condition", *(c.label for c in board.columns)]
    )
    body = []
    for row in board.rows:
        tds = [
            f'<td class="name">{html.escape(row.model)}</td>',
            f'<td class="name">{html.escape(_condition_text(row))}</td>',
        ]
        for column in board.columns:
            entry = row.entries.get(column)
            if entry is None:
                tds.append("<td>–</td>")
                continue
            cls = "delta"
            if entry.delta is not None and entry.delta.p_value < alpha:
                cls += " down" if entry.delta.delta < 0 else " up"
            delta = _delta_text(entry)
            tds.append(
                f"<td>{html.escape(_value_text(entry))}"
                + (f'<span class="{cls}">{html.escape(delta)}</span>' if delta else "")
                + "</td>"
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
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
        + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
        + f'<img alt="grouped bar chart per task" src="data:image/png;base64,{image}">\n'
        "</body>\n</html>\n"
    )


# ----------------------------------------------------------------------------------------------- plotting


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
        figsize=(max(6.0, 1.2 * len(models) * max(1, len(conditions)) / 3 + 2), 3.2 * len(tasks)),
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
                ax.bar(xs, heights, width, yerr=yerr, capsize=3, label=condition, color=colours(j % 10))
        ax.set_title(column.label)
        ax.set_xticks(range(len(models)), models)
        ax.set_xlim(-0.5, len(models) - 0.5)
        span = max(tops) - min(bottoms)  # ~0 for a random-weight model: show the 0..1 range, not float noise
        ax.set_ylim(min(0.0, min(bottoms) - 0.1 * span), max(tops) + 0.15 * span if span > 1e-6 else 1.0)
        ax.set_ylabel(column.metric)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(4, len(conditions)), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(conditions) - 1) // 4), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_plot(board: Leaderboard, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, plot_png(board))
    return path


def write(board: Leaderboard, fmt: str, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, render(board, fmt).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a `narrowgate grid` output folder")
    parser.add_argument("--format", choices=FORMATS, default="md", help="table format (default md)")
    parser.add_argument("--output", help="write the table to this file instead of printing it")
    parser.add_argument("--plot", metavar="FILE.png", help="also write the grouped bar chart per task to this PNG")
    parser.add_argument("--metrics", help="comma-separated metric names (or TASK:METRIC) to show; default all")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    try:
        board = build(
            args.directory,
            metrics=args.metrics.split(",") if args.metrics else None,
            n_resamples=args.resamples,
            seed=args.seed,
        )
    except ValueError as error:
        print(f"narrowgate leaderboard: {error}", file=sys.stderr)
        return 2
    if args.output:
        print(f"wrote {write(board, args.format, args.output)}", file=sys.stderr)
    else:
        sys.stdout.write(render(board, args.format))
    if args.plot:
        print(f"wrote {write_plot(board, args.plot)}", file=sys.stderr)
    return 0
