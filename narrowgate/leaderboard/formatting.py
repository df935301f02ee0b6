"""How numbers, changes and conditions are written in every rendering (one place, so they agree)."""

from __future__ import annotations

from narrowgate.core.stats import PairedRatio
from narrowgate.leaderboard.summary import GateShare
from narrowgate.leaderboard.table import Entry, Leaderboard, Row

SHARE_HEADERS = ["model", "task metric", "image effect", "through the gate", "bypassing it"]


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


def share_legend(board: Leaderboard) -> str:
    return (
        "Gate share of the image's effect (image effect: baseline − image_ablated): through the gate = "
        "(baseline − gate_ablated) / effect, bypassing it = (baseline − gate_only) / effect, with "
        f"[{board.confidence:.0%} CI] from a paired bootstrap over documents; a narrow gate: near 1 and near 0."
    )


def ratio_text(ratio: PairedRatio | None) -> str:
    return "–" if ratio is None else f"{ratio.ratio:.2f} [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]"


def share_cells(share: GateShare) -> list[str]:
    """One row of the gate-share table, in the order of ``SHARE_HEADERS``."""
    return [
        share.model,
        f"{share.task} {share.metric}",
        signed(share.image_effect),
        ratio_text(share.through),
        ratio_text(share.bypass),
    ]
