"""Neighbourhood overlap with the labels per layer (the paper's Fig. 4).

chi(l) = (1/n) sum_i (1/k) |N_k(i) ∩ {j : y_j = y_i}|, with N_k(i) the k nearest neighbours (Euclidean)
of example i's vector at the output of layer l. One curve per token: the gate, the last image token, the
mean of the image tokens and the mean of the special tokens; one panel per label kind. ``chance`` is
chi's expectation for vectors unrelated to the labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from narrowgate_tasks import prompts

from .output import Result
from .subject import Subject, vectors

NAME = "overlap"
HELP = "neighbourhood overlap chi of the gate, last, image-mean and special tokens with the image labels, per layer"
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


def analyse(subject: Subject, examples, condition=None, *, k: int = 30) -> Result:
    """chi per token, layer and label kind, with ``k`` neighbours (capped at n - 1)."""
    examples.require_labels(NAME)
    requests = [prompts.CAPTION_REQUEST] * len(examples)
    found = vectors(subject, examples.images, requests, condition, TOKENS, "overlap")
    k = min(k, len(examples) - 1)
    rows = []
    for token, data in found.items():
        if bool(data.isnan().all()):
            continue  # the family has no such token (e.g. no special token before LLaVA's image)
        for layer in range(subject.num_layers):
            for kind, labels in examples.labels.items():
                rows.append((token, layer, kind, chi(data[:, layer].numpy(), labels, k)))
    table = pd.DataFrame(rows, columns=["token", "layer", "label", "chi"])
    summary = {
        "prompt": prompts.CAPTION_REQUEST,
        "k": k,
        "chance": {kind: chance(labels) for kind, labels in examples.labels.items()},
        "max_chi": table.groupby(["label", "token"])["chi"].max().unstack().round(4).to_dict(orient="index"),
    }
    return Result(NAME, table, summary, plot(table, summary, subject))


def plot(table: pd.DataFrame, summary: dict, subject: Subject):
    import matplotlib.pyplot as plt

    kinds = list(summary["chance"])
    figure, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        part = table[table.label == kind]
        for token, curve in part.groupby("token", sort=False):
            ax.plot(curve.layer, curve.chi, marker="o", label=token)
        ax.axhline(summary["chance"][kind], color="grey", linestyle=":", label="chance")
        ax.set(xlabel="layer", ylabel="chi", ylim=(0, 1.02), title=f"{kind}")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(f"neighbourhood overlap (k={summary['k']}): {subject.pretrained}", fontsize=9)
    return figure
