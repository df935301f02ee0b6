"""How numbers, changes and conditions are written in every rendering (one place, so they agree)."""

from __future__ import annotations

from narrowgate.leaderboard.table import Entry, Leaderboard, Row


def legend(board: Leaderboard) -> str:
    ci = f"{board.confidence:.0%}"
    return (
        f"Δ: change against the same model's baseline; [{ci} CI] and p from a paired bootstrap over documents "
        f"({board.n_resamples} resamples; two-sided). Conditions with several seeds: mean ± std over seeds, "
        f"Δ on each document's mean over seeds. Δ without an interval: no per-sample scores for that metric."
    )


def number(x: float) -> str:
    return f"{x:.3f}".replace("-0.000", "0.000")


def signed(x: float) -> str:
    return f"{x:+.3f}".replace("-0.000", "+0.000")


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def value_text(entry: Entry) -> str:
    return number(entry.value) + (f" ± {number(entry.std)}" if entry.std is not None else "")


def delta_text(entry: Entry) -> str:
    if entry.delta is not None:
        d = entry.delta
        return f"Δ {signed(d.delta)} [{signed(d.ci_low)}, {signed(d.ci_high)}] {p_text(d.p_value)}"
    if entry.plain_delta is not None:
        return f"Δ {signed(entry.plain_delta)}"
    return ""


def condition_text(row: Row) -> str:
    return f"{row.condition} (×{row.seeds})" if row.seeds > 1 else row.condition
