"""Density-peak clustering that assigns every point (the paper's Fig. 2 homogeneity).

The authors used dadapy's advanced density peaks (ADP; d'Errico, Facco, Laio, Rodriguez 2021): a kNN
density (k = 16) in the data's intrinsic dimension, every point assigned to a density peak, and peaks
merged while the density at the saddle between two of them is not significantly below the lower peak
(confidence ``z``, 1.65 in the paper). dadapy 0.3.4 pins jax/flax and its compiled extension does not
load under numpy 2, so this module implements the same steps with numpy/scipy:

1. distances (cosine by default); intrinsic dimension by TwoNN (dadapy: gride, another
   nearest-neighbour estimator);
2. log density log rho_i = -d log r_ik (up to a constant), error 1/sqrt(k);
3. peaks: points denser than each of their k neighbours (and in no denser point's neighbourhood);
   every other point, from the densest down, joins the cluster of its nearest denser neighbour;
4. saddle of two clusters: the highest density min(rho_i, rho_j) over neighbour pairs across them;
   the pair with the highest saddle is merged while log rho_peak - log rho_saddle < z (err_peak +
   err_saddle) for the lower peak; repeat.

No point is left unassigned, so homogeneity is never diluted by a "noise" label.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

K_DENSITY = 16  # the paper's kNN density
Z = 1.65  # the paper's merging confidence (the one free parameter; see ``narrowgate analyze gap``)


def intrinsic_dimension(nearest: np.ndarray) -> float:
    """TwoNN maximum-likelihood estimate from each point's two nearest distances (n, 2); points whose
    nearest distance is 0 (duplicates) are dropped."""
    ok = nearest[:, 0] > 0
    ratios = nearest[ok, 1] / nearest[ok, 0]
    logs = np.log(ratios[ratios > 1])
    if len(logs) < 2:
        raise ValueError("the intrinsic dimension needs at least 2 points with distinct nearest neighbours")
    return float(len(logs) / logs.sum())


def density_peaks(points: np.ndarray, k: int = K_DENSITY, z: float = Z, metric: str = "cosine") -> np.ndarray:
    """A cluster label (0, 1, ...) for every row of ``points``."""
    n = len(points)
    if n < 4:
        raise ValueError(f"density peaks need at least 4 points, got {n}")
    k = min(k, n - 2)
    distance, index = NearestNeighbors(n_neighbors=k + 2, metric=metric).fit(points).kneighbors(points)
    # each point's k + 1 nearest others, itself dropped (not always column 0 where points coincide)
    keep = index != np.arange(n)[:, None]
    keep[keep.sum(axis=1) > k + 1, -1] = False
    neighbours, distance = index[keep].reshape(n, k + 1), distance[keep].reshape(n, k + 1)
    log_density = -intrinsic_dimension(distance[:, :2]) * np.log(np.maximum(distance[:, k - 1], 1e-12))
    neighbours = neighbours[:, :k]
    error = 1.0 / np.sqrt(k)
    g = log_density - error  # the ranking density (dadapy's g)

    denser = g[neighbours] > g[:, None]  # (n, k): which neighbours are denser
    is_peak = ~denser.any(axis=1)
    is_peak[neighbours[g[neighbours] < g[:, None]]] = False  # inside a denser point's neighbourhood
    label = np.full(n, -1)
    label[is_peak] = np.arange(is_peak.sum())
    for i in np.argsort(-g, kind="stable"):
        if label[i] >= 0:
            continue
        if denser[i].any():
            j = neighbours[i][denser[i]][0]  # the nearest denser neighbour (labelled before i)
        else:  # only inside a denser point's neighbourhood: the nearest denser point anywhere
            candidates = np.flatnonzero(g > g[i])
            j = candidates[np.argmin(cdist(points[i : i + 1], points[candidates], metric=metric)[0])]
        label[i] = label[j]

    peak = {c: log_density[label == c].max() for c in range(label.max() + 1)}
    saddle: dict[tuple[int, int], float] = {}
    for i, row in enumerate(neighbours):
        for j in row:
            pair = (min(label[i], label[j]), max(label[i], label[j]))
            if pair[0] != pair[1]:
                saddle[pair] = max(saddle.get(pair, -np.inf), min(log_density[i], log_density[j]))
    while True:
        mergeable = [pair for pair, s in saddle.items() if min(peak[pair[0]], peak[pair[1]]) - s < z * 2 * error]
        if not mergeable:
            break
        a, b = max(mergeable, key=saddle.get)
        kept, gone = (a, b) if peak[a] >= peak[b] else (b, a)
        label[label == gone] = kept
        del peak[gone]
        merged: dict[tuple[int, int], float] = {}
        for (c, d), s in saddle.items():
            c, d = (kept if c == gone else c), (kept if d == gone else d)
            if c != d:
                pair = (min(c, d), max(c, d))
                merged[pair] = max(merged.get(pair, -np.inf), s)
        saddle = merged
    return np.unique(label, return_inverse=True)[1]
