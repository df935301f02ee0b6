"""What the leaderboard found, per model: the share of the image's effect that passes through the gate.

The image's effect on a task is baseline − image_ablated (every image→text path cut). Blocking only
the gate removes (baseline − gate_ablated) of it, and leaving only the gate open removes
(baseline − gate_only): for a narrow gate the first share is near 1 and the second near 0; when the
information spreads over the image tokens it is the other way round. Both are ratios of mean
per-document score changes, with a paired bootstrap CI over documents (``stats.paired_bootstrap_ratio``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from narrowgate.core.stats import PairedRatio, paired_bootstrap_ratio
from narrowgate.leaderboard.collect import (
    BASELINE,
    mean_over_seeds,
    paired_scores,
)
from narrowgate.leaderboard.scores import CellResult

IMAGE_ABLATED = "image_ablated"
# share name -> the condition whose change from baseline, relative to the image's effect, it is
SHARES = {"through": "gate_ablated", "bypass": "gate_only"}


@dataclass(frozen=True)
class GateShare:
    """One model's gate shares on one task metric (a share is None when its condition was not run)."""

    model: str
    task: str
    metric: str
    image_effect: float  # mean(baseline − image_ablated) per document
    through: PairedRatio | None  # (baseline − gate_ablated) / (baseline − image_ablated)
    bypass: PairedRatio | None  # (baseline − gate_only) / (baseline − image_ablated)


def gate_share(
    baseline: Sequence[float],
    knocked_out: Sequence[float],
    image_ablated: Sequence[float],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedRatio:
    """The share of the image's effect that a knockout removes, per-document scores paired by position:
    mean(baseline − knocked_out) / mean(baseline − image_ablated), with a paired bootstrap CI.

    ``knocked_out`` = gate_ablated gives the share that passes through the gate, gate_only the share
    that bypasses it. ValueError when the image has no effect on average (the share is undefined).
    """
    base = np.asarray(baseline, dtype=np.float64)
    knocked, cut = np.asarray(knocked_out, dtype=np.float64), np.asarray(image_ablated, dtype=np.float64)
    if not base.shape == knocked.shape == cut.shape:
        raise ValueError(
            f"gate_share needs three per-document score lists of equal length, got {base.shape}, {knocked.shape} "
            f"and {cut.shape}"
        )
    if base.size and (base - cut).mean() == 0:
        raise ValueError(
            "image_ablated scores the same as baseline on average: the image has no effect on this metric, so no "
            "share of it can pass through the gate"
        )
    return paired_bootstrap_ratio(base - knocked, base - cut, n_resamples=n_resamples, confidence=confidence, seed=seed)


def gate_shares(
    model: str,
    runs: dict[str, list[CellResult]],
    metric: str,
    task: str,
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
    notes: list[str],
) -> GateShare | None:
    """The model's shares on ``task``/``metric`` from its cells by condition name (the ``baseline``,
    ``image_ablated``, ``gate_ablated`` and ``gate_only`` rows); None without baseline and image_ablated."""
    if BASELINE not in runs or IMAGE_ABLATED not in runs:
        return None
    names = [BASELINE, IMAGE_ABLATED, *(n for n in SHARES.values() if n in runs)]
    aligned = paired_scores([(runs[n], mean_over_seeds(runs[n], metric)) for n in names], task)
    scores = dict(zip(names, aligned))
    effect = float(np.mean(np.subtract(scores[BASELINE], scores[IMAGE_ABLATED])))
    shares: dict[str, PairedRatio | None] = dict.fromkeys(SHARES)
    if effect == 0:
        notes.append(
            f"{model}: image_ablated scores the same as baseline on {task} {metric}, so the gate share is undefined."
        )
    else:
        for share, name in SHARES.items():
            if name in scores:
                shares[share] = gate_share(
                    scores[BASELINE],
                    scores[name],
                    scores[IMAGE_ABLATED],
                    n_resamples=n_resamples,
                    confidence=confidence,
                    seed=seed,
                )
    return GateShare(model, task, metric, effect, shares["through"], shares["bypass"])
