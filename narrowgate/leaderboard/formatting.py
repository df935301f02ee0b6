"""How numbers, changes and conditions are written in every rendering (one place, so they agree)."""

from __future__ import annotations

from narrowgate.core.stats import PairedRatio
from narrowgate.leaderboard.summary import GateShare
from narrowgate.leaderboard.table import Entry, Leaderboard, Row

SHARE_HEADERS = ["model", "task metric", "image effect [CI]", "through the gate", "bypassing it"]


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
        f"[{board.confidence:.0%} CI] from a paired bootstrap over documents; a narrow gate: near 1 and near 0. "
        "Shares are not bounded to [0, 1]. Where the image effect's CI contains 0 the shares are undefined; "
        "resamples whose effect is exactly 0 have no ratio and are left out of the interval (counted)."
    )


def effect_text(share: GateShare) -> str:
    e = share.image_effect
    return f"{signed(e.delta)} [{signed(e.ci_low)}, {signed(e.ci_high)}]"


def ratio_text(ratio: PairedRatio | None, share: GateShare | None = None) -> str:
    """A share as ratio [CI] (with the count of resamples left out for a zero effect), "undefined: …"
    when ``share`` is undefined, "–" when the condition was not run."""
    if share is not None and not share.defined:
        return "undefined: image effect's CI contains 0"
    if ratio is None:
        return "–"
    dropped = (
        f" ({ratio.undefined} of {ratio.n_resamples} resamples without effect left out)" if ratio.undefined else ""
    )
    return f"{ratio.ratio:.2f} [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]{dropped}"


def share_cells(share: GateShare) -> list[str]:
    """One row of the gate-share table, in the order of ``SHARE_HEADERS``."""
    return [
        share.model,
        f"{share.task} {share.metric}",
        effect_text(share),
        ratio_text(share.through, share),
        ratio_text(share.bypass, share),
    ]


def share_reasons(board: Leaderboard) -> list[str]:
    """Why each undefined share is undefined, one line per model and task."""
    return [f"{s.model}, {s.task} {s.metric}: no gate share: {s.undefined}." for s in board.shares if not s.defined]


# A narrow gate: most of the image's effect passes through the gate, beyond sampling noise.
NARROW = 0.5


def verdict(shares: list[GateShare]) -> str:
    """One line per model: each task's share through the gate and what it says ("a narrow gate" when the
    share's CI lies above ``NARROW``, "no gate" when below it, "inconclusive" when it spans it)."""
    if not shares:
        return "no gate share: it needs the baseline and image_ablated conditions"
    parts = []
    for share in shares:
        task = f"{share.task.removeprefix('narrowgate_')} {share.metric}"
        through = share.through
        if not share.defined:
            parts.append(f"{task}: gate share undefined, the image effect's CI contains 0")
        elif through is None:
            parts.append(f"{task}: no share through the gate (gate_ablated not run)")
        else:
            what = (
                "a narrow gate"
                if through.ci_low > NARROW
                else "no gate"
                if through.ci_high < NARROW
                else f"inconclusive (the CI spans {NARROW})"
            )
            parts.append(f"{task}: through the gate {ratio_text(through)}: {what}")
    return "; ".join(parts)
