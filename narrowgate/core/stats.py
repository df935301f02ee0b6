"""Paired bootstrap over per-sample scores: the change of a mean score with a 95% CI and a p-value.

Every condition of one model is scored on the same documents, so the comparison with the baseline is
paired: resampling documents (not scores) keeps each document's baseline and condition score
together, which removes between-document variance from the interval. This works for any score that is
averaged over documents (VQA accuracy, per-image CIDEr), unlike lmms-eval's own paired t-test, which
cannot read the caption tasks' dict-valued results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDelta:
    """mean(treated) - mean(baseline) over n paired documents, with a bootstrap CI and p-value."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    confidence: float
    n_resamples: int


def paired_bootstrap(
    baseline: Sequence[float],
    treated: Sequence[float],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """Bootstrap the mean paired difference ``treated - baseline``.

    The CI is the percentile interval of the resampled mean differences. The p-value is two-sided for
    "no change": the share of resampled differences, re-centred on 0 (the null), at least as far from 0
    as the observed one, with the usual +1 correction so it is never 0 (its floor is
    ``1 / (n_resamples + 1)``). Identical runs give delta 0, CI [0, 0] and p = 1; a constant shift c
    gives delta c and CI [c, c].
    """
    base, treat = _paired_arrays(baseline, treated)
    _check_options(n_resamples, confidence)
    diff = treat - base
    delta = float(diff.mean())
    (means,) = resampled_means([diff], n_resamples=n_resamples, seed=seed)
    alpha = (1.0 - confidence) / 2.0
    ci_low, ci_high = np.quantile(means, [alpha, 1.0 - alpha])
    # Tolerance so that floating-point noise in a resampled mean of identical values does not count.
    tol = 1e-12 * max(1.0, float(np.abs(diff).max()))
    extreme = int(np.count_nonzero(np.abs(means - delta) >= abs(delta) - tol))
    p_value = (extreme + 1) / (n_resamples + 1)
    return PairedDelta(
        delta=delta,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        n=int(diff.size),
        confidence=confidence,
        n_resamples=n_resamples,
    )


@dataclass(frozen=True)
class PairedRatio:
    """mean(numerator) / mean(denominator) over n paired documents, with a percentile bootstrap CI;
    ``undefined`` resamples had a zero denominator and are left out of the interval."""

    ratio: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float
    n_resamples: int
    undefined: int


def paired_bootstrap_ratio(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedRatio:
    """Bootstrap a ratio of two per-document means, resampling documents (each keeps both its values).

    A zero mean denominator has no ratio: ValueError. Resampling keeps the pairing, so when the
    numerator equals the denominator on every document the ratio and its interval are exactly 1.
    """
    num, den = _paired_arrays(numerator, denominator)
    _check_options(n_resamples, confidence)
    if den.mean() == 0:
        raise ValueError("the denominator's mean is 0 over the documents, so the ratio is undefined")
    num_means, den_means = resampled_means([num, den], n_resamples=n_resamples, seed=seed)
    defined = den_means != 0
    ratios = num_means[defined] / den_means[defined]
    alpha = (1.0 - confidence) / 2.0
    ci_low, ci_high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return PairedRatio(
        ratio=float(num.mean() / den.mean()),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        n=int(num.size),
        confidence=confidence,
        n_resamples=n_resamples,
        undefined=int(np.count_nonzero(~defined)),
    )


def resampled_means(arrays: Sequence[np.ndarray], *, n_resamples: int, seed: int) -> list[np.ndarray]:
    """The means of each array over ``n_resamples`` bootstrap resamples of documents, the same resampled
    documents for every array (that is what keeps the comparison paired)."""
    size = arrays[0].size
    rng = np.random.default_rng(seed)
    # Resample in chunks so that 10k resamples of a 5000-document task stay within a few MB.
    chunk = max(1, 2_000_000 // size)
    means: list[list[np.ndarray]] = [[] for _ in arrays]
    for start in range(0, n_resamples, chunk):
        index = rng.integers(0, size, size=(min(chunk, n_resamples - start), size))
        for out, values in zip(means, arrays):
            out.append(values[index].mean(axis=1))
    return [np.concatenate(m) for m in means]


def _paired_arrays(first: Sequence[float], second: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(first, dtype=np.float64)
    treat = np.asarray(second, dtype=np.float64)
    if base.ndim != 1 or base.shape != treat.shape:
        raise ValueError(
            f"paired bootstrap needs two 1-d score lists of equal length, got shapes {base.shape} and {treat.shape}"
        )
    if base.size == 0:
        raise ValueError("paired bootstrap needs at least one paired sample, got none")
    if not (np.isfinite(base).all() and np.isfinite(treat).all()):
        raise ValueError("paired bootstrap got a non-finite score (nan or inf); check the per-sample scores")
    return base, treat


def _check_options(n_resamples: int, confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
