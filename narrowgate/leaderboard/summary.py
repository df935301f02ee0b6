"""What the leaderboard found, per model: the share of the image's effect that passes through the gate.

The image's effect on a task is baseline − image_ablated (every image→text path cut). Blocking only
the gate removes (baseline − gate_ablated) of it, and leaving only the gate open removes
(baseline − gate_only): for a narrow gate the first share is near 1 and the second near 0; when the
information spreads over the image tokens it is the other way round. Both are ratios of mean
per-document score changes, with a paired bootstrap CI over documents (``stats.paired_bootstrap_ratio``).
A ratio is not bounded to [0, 1] (a knockout can cost more than cutting the image, or help).

A share of an effect that may be 0 means nothing (with an effect of 0.03 on 64 documents a share reads
1.00 [−1.5, 3.0]): the image effect comes with its own CI, and where that CI contains 0 the shares are
undefined, with the reason, instead of a ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from narrowgate.core.stats import PairedDelta, PairedRatio, paired_bootstrap, paired_bootstrap_ratio
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
    """One model's gate shares on one task metric. A share is None when its condition was not run or when
    ``undefined`` says why no share of the image's effect is defined (its CI contains 0)."""

    model: str
    task: str
    metric: str
    image_effect: PairedDelta  # mean(baseline − image_ablated) per document, with its CI
    through: PairedRatio | None  # (baseline − gate_ablated) / (baseline − image_ablated)
    bypass: PairedRatio | None  # (baseline − gate_only) / (baseline − image_ablated)
    undefined: str | None = None  # why the shares are undefined; None when they are defined

    @property
    def defined(self) -> bool:
        return self.undefined is None


def image_effect(baseline: Sequence[float], image_ablated: Sequence[float], **options: Any) -> PairedDelta:
    """mean(baseline − image_ablated) with its paired bootstrap CI (``options``: ``paired_bootstrap``'s;
    for the same seed, the same resamples as the shares' denominators)."""
    return paired_bootstrap(image_ablated, baseline, **options)


def undefined_reason(effect: PairedDelta) -> str | None:
    """Why no share of this image effect is defined (its CI contains 0), or None."""
    if effect.ci_low <= 0 <= effect.ci_high:
        return (
            f"the image effect (baseline − image_ablated) is {effect.delta:+.3f} "
            f"[{effect.ci_low:+.3f}, {effect.ci_high:+.3f}] ({effect.confidence:.0%} CI over {effect.n} documents): "
            "its interval contains 0, so a share of it is undefined"
        )
    return None


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
    mean(baseline − knocked_out) / mean(baseline − image_ablated), with a paired bootstrap CI whose
    ``undefined`` counts the resamples left out for a zero denominator.

    ``knocked_out`` = gate_ablated gives the share that passes through the gate, gate_only the share
    that bypasses it. ValueError naming the image effect when its CI contains 0 (the share is undefined).
    """
    base = np.asarray(baseline, dtype=np.float64)
    knocked, cut = np.asarray(knocked_out, dtype=np.float64), np.asarray(image_ablated, dtype=np.float64)
    if not base.shape == knocked.shape == cut.shape:
        raise ValueError(
            f"gate_share needs three per-document score lists of equal length, got {base.shape}, {knocked.shape} "
            f"and {cut.shape}"
        )
    options = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    reason = undefined_reason(image_effect(base, cut, **options))
    if reason is not None:
        raise ValueError(reason)
    return paired_bootstrap_ratio(base - knocked, base - cut, **options)


def gate_shares(
    model: str,
    runs: dict[str, list[CellResult]],
    metric: str,
    task: str,
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> GateShare | None:
    """The model's shares on ``task``/``metric`` from its cells by condition name (the ``baseline``,
    ``image_ablated``, ``gate_ablated`` and ``gate_only`` rows); None without baseline and image_ablated."""
    if BASELINE not in runs or IMAGE_ABLATED not in runs:
        return None
    names = [BASELINE, IMAGE_ABLATED, *(n for n in SHARES.values() if n in runs)]
    aligned = paired_scores([(runs[n], mean_over_seeds(runs[n], metric)) for n in names], task)
    scores = dict(zip(names, aligned))
    options = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    effect = image_effect(scores[BASELINE], scores[IMAGE_ABLATED], **options)
    reason = undefined_reason(effect)
    shares: dict[str, PairedRatio | None] = dict.fromkeys(SHARES)
    if reason is None:
        for share, name in SHARES.items():
            if name in scores:
                shares[share] = gate_share(scores[BASELINE], scores[name], scores[IMAGE_ABLATED], **options)
    return GateShare(model, task, metric, effect, shares["through"], shares["bypass"], reason)
