"""Neighbourhood overlap with the labels per layer (the paper's Fig. 4).

chi(l) = (1/n) sum_i (1/k) |N_k(i) ∩ {j : y_j = y_i}|, with N_k(i) the k nearest neighbours (Euclidean)
of example i's vector at the output of layer l. One curve per token: the gate, the last image token, the
mean of the image tokens and the mean of the special tokens; one panel per label kind. ``chance`` is
chi's expectation for vectors unrelated to the labels, ``ceiling`` the highest chi the class sizes allow
(k neighbours cannot all share the label of a class smaller than k + 1). By default k is the paper's 30
kept below the smallest class, so the ceiling is 1 (docs/protocol.md §8).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from narrowgate_tasks import prompts

from .output import Result
from .plotting import layer_axis, legend_outside, stairs, title
from .subject import Subject, vectors

NAME = "overlap"
HELP = "neighbourhood overlap chi of the gate, last, image-mean and special tokens with the image labels, per layer"
K = 30  # the paper's neighbours
TOKENS = {
    "gate": lambda g, i: g.gate,
    "last": lambda g, i: g.last,
    "image": lambda g, i: g.image,
    "special": lambda g, i: g.special,
}


def chi(points: np.ndarray, labels: Sequence[str], k: int) -> float:
    """The neighbourhood overlap of ``points`` (n, d) with ``labels``: the mean fraction of each point's
    k nearest neighbours (itself excluded) that share its label."""
    n = len(points)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    labels = np.asarray(labels)
    _, index = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    # drop each point itself (not always column 0 when points coincide)
    neighbours = np.array([[j for j in row if j != i][:k] for i, row in enumerate(index)])
    return float((labels[neighbours] == labels[:, None]).mean())


def chance(labels: Sequence[str]) -> float:
    """chi's expectation for neighbours drawn at random: the chance that another example shares the label."""
    n, counts = len(labels), Counter(labels).values()
    return sum(c * (c - 1) for c in counts) / (n * (n - 1))


def ceiling(labels: Sequence[str], k: int) -> float:
    """The highest reachable chi with k neighbours: an example of a class of c can have only c - 1
    neighbours of its class, so chi <= mean_i min(k, c_i - 1) / k (1 when k is below the smallest class)."""
    counts = Counter(labels)
    return sum(min(k, counts[label] - 1) for label in labels) / (k * len(labels))


def neighbours(labels: Sequence[str], k: int | None) -> int:
    """The k of chi: ``k`` capped at n - 1, or by default the paper's 30 kept below the smallest class
    (so that chi can reach 1 and compares across label kinds)."""
    if k is not None:
        return min(k, len(labels) - 1)
    smallest = min(Counter(labels).values())
    if smallest < 2:
        raise ValueError(f"a label has a single example ({', '.join(sorted(l for l, c in Counter(labels).items() if c < 2))}), so no neighbour can share it; use more examples or give --k")
    return min(K, smallest - 1)


def analyse(subject: Subject, examples, condition=None, *, k: int | None = None) -> Result:
    """chi per token, layer and label kind; ``k`` neighbours (default: ``neighbours``)."""
    examples.require_labels(NAME)
    requests = [prompts.CAPTION_REQUEST] * len(examples)
    found = vectors(subject, examples.images, requests, condition, TOKENS, "overlap")
    ks = {kind: neighbours(labels, k) for kind, labels in examples.labels.items()}
    rows = []
    for token, data in found.items():
        if bool(data.isnan().all()):
            continue  # the family has no such token (e.g. no special token before LLaVA's image)
        for layer in range(subject.num_layers):
            for kind, labels in examples.labels.items():
                rows.append((token, layer, kind, chi(data[:, layer].numpy(), labels, ks[kind])))
    table = pd.DataFrame(rows, columns=["token", "layer", "label", "chi"])
    best = table.groupby(["label", "token"])["chi"].max().unstack()
    summary = {
        "prompt": prompts.CAPTION_REQUEST,
        "k": ks,
        "chance": {kind: chance(labels) for kind, labels in examples.labels.items()},
        "ceiling": {kind: ceiling(labels, ks[kind]) for kind, labels in examples.labels.items()},
        "max_chi": best.round(4).to_dict(orient="index"),
    }
    lines = [
        f"{kind}: best chi gate {best.loc[kind, 'gate']:.2f}, image {best.loc[kind, 'image']:.2f} "
        f"(chance {summary['chance'][kind]:.2f}, ceiling {summary['ceiling'][kind]:.2f}, k={ks[kind]})"
        for kind in ks
        if {"gate", "image"} <= set(best.columns)
    ]
    figure = plot(table, summary, title("neighbourhood overlap", subject, condition, f"n={len(examples)}"), subject.num_layers)
    return Result(NAME, table, summary, figure, "\n".join(lines))


def plot(table: pd.DataFrame, summary: dict, heading: str, num_layers: int):
    import matplotlib.pyplot as plt

    kinds = list(summary["chance"])
    figure, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds) + 1, 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        part = table[table.label == kind]
        for token, curve in part.groupby("token", sort=False):
            stairs(ax, curve.layer, curve.chi, label=token, linewidth=1.5)
        ax.axhline(summary["chance"][kind], color="grey", linestyle=":", label="chance")
        ax.axhline(summary["ceiling"][kind], color="black", linestyle="--", linewidth=0.8, label="ceiling")
        ax.set(ylabel="chi", ylim=(0, 1.02), title=f"{kind} (k={summary['k'][kind]})")
        layer_axis(ax, num_layers)
    legend_outside(axes[0][-1])
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    return figure
