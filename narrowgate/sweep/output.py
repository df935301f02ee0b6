"""A sweep's results: a table (CSV, JSON), the plot of the score change vs window start with paired
bootstrap intervals, and the terminal summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from narrowgate.core.files import write_atomic
from narrowgate.sweep.runner import SweepResult


def table(result: SweepResult) -> pd.DataFrame:
    """One row per window: where it sits, its score and its change from the baseline with the interval."""
    rows = []
    for entry in result.windows:
        window, delta = entry.window, entry.delta
        rows.append(
            {
                "window": window.label,
                "size": window.size,
                "start": window.start,
                "layers": window.layers,
                "head": window.head,
                "score": entry.score,
                "baseline": result.baseline,
                "delta": delta.delta,
                "ci_low": delta.ci_low,
                "ci_high": delta.ci_high,
                "p_value": delta.p_value,
                "n": delta.n,
            }
        )
    return pd.DataFrame(rows)


def write(result: SweepResult, output: Path, plot: Path | None = None) -> list[Path]:
    """``sweep.csv``, ``sweep_results.json`` and the plot (``sweep.png`` unless ``plot`` names another
    file) under ``output``, each written atomically; returns their paths."""
    frame = table(result)
    sweep = result.sweep
    csv_path, json_path = output / "sweep.csv", output / "sweep_results.json"
    plot = plot or output / "sweep.png"
    write_atomic(csv_path, frame.to_csv(index=False).encode())
    document = {
        "sweep": sweep.record(),
        "metric": result.metric,
        "confidence": result.confidence,
        "n_resamples": result.windows[0].delta.n_resamples,
        "windows": json.loads(frame.to_json(orient="records")),
    }
    write_atomic(json_path, (json.dumps(document, indent=2) + "\n").encode())
    write_atomic(plot, plot_png(result))
    return [csv_path, json_path, plot]


def _series(result: SweepResult) -> dict[str, pd.DataFrame]:
    """The plot's lines: one per window size (layer sweeps) or one for the heads."""
    frame = table(result)
    if frame["head"].notna().any():
        return {f"one head, layers {frame['layers'][0]}": frame.assign(x=frame["head"])}
    return {f"{size} layer{'s' * (size > 1)}": part.assign(x=part["start"]) for size, part in frame.groupby("size")}


def plot_png(result: SweepResult) -> bytes:
    """The change of the score from the baseline vs the window's first layer (or the head), one line per
    window size, with the paired bootstrap intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = result.sweep
    series = _series(result)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for offset, (label, part) in enumerate(series.items()):
        shift = (offset - (len(series) - 1) / 2) * 0.08  # side by side, so that intervals do not hide each other
        ax.errorbar(
            part["x"] + shift,
            part["delta"],
            yerr=[part["delta"] - part["ci_low"], part["ci_high"] - part["delta"]],
            marker="o",
            capsize=3,
            label=f"window of {label}" if sweep.windows[0].head is None else label,
        )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    heads = sweep.windows[0].head is not None
    ax.set_xlabel("head" if heads else "first layer of the window")
    ax.set_xticks(sorted({int(x) for part in series.values() for x in part["x"]}))
    ax.set_ylabel(f"Δ {result.metric} vs baseline")
    options = " ".join(f"{k}={v}" for k, v in sweep.options.items())
    ax.set_title(f"{sweep.model.name}: {sweep.name} {options}\n{sweep.task}".replace(" \n", "\n"), fontsize="medium")
    ax.legend(fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def summary(result: SweepResult) -> str:
    """The terminal summary: per window its score, Δ with the interval and p, ``*`` when the interval
    excludes 0."""
    sweep = result.sweep
    percent = round(result.confidence * 100)
    options = " ".join(f"{k}={v}" for k, v in sweep.options.items())
    lines = [
        f"{sweep.model.name} · {sweep.task} · {sweep.name} {options}".rstrip(),
        f"baseline {result.metric} = {result.baseline:.3f} (n = {result.windows[0].delta.n} documents)",
        f"{'window':28s} {'score':>6s} {'Δ':>7s}  {percent}% CI{'':10s} {'p':>6s}",
    ]
    for entry in result.windows:
        d = entry.delta
        star = "*" if d.ci_low > 0 or d.ci_high < 0 else " "
        p = f"{d.p_value:6.3f}" if d.p_value >= 0.001 else " <.001"
        lines.append(f"{entry.window.label:28s} {entry.score:6.3f} {d.delta:+7.3f}  [{d.ci_low:+.3f}, {d.ci_high:+.3f}] {p} {star}")
    lines.append(f"* the paired bootstrap {percent}% interval excludes 0")
    return "\n".join(lines)
