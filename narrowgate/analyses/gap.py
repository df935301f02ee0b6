"""The modality gap per layer (the paper's Fig. 2).

Each image is followed by its caption; per example and layer, one random image token's and one random
caption token's residual (layer output) are kept. Cosine: the median and quartiles of |cos(text_i,
image_j)| over all pairs. Homogeneity: the 2n vectors are clustered by density (scikit-learn's HDBSCAN
on cosine distances) and ``homogeneity_score(modality, clusters)`` says how purely the clusters
separate the modalities (1: every cluster holds one modality). The authors used dadapy's advanced density
peaks; dadapy 0.3.4 pins jax and flax and its compiled extension does not load under numpy 2, so
HDBSCAN, the density-based clustering scikit-learn ships, stands in.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import HDBSCAN
from sklearn.metrics import homogeneity_score

from .output import Result
from .subject import Subject, vectors

NAME = "gap"
HELP = "modality gap: |cos| between image-token and text-token residuals and cluster homogeneity, per layer"


def _one(positions, i: int, purpose: str, seed: int) -> tuple[int, ...]:
    if not positions:
        return ()
    return (random.Random(f"{purpose}:{seed}:{i}").choice(positions),)


def cosine_band(text: torch.Tensor, image: torch.Tensor) -> tuple[float, float, float]:
    """(25%, median, 75%) of |cos| over every (text_i, image_j) pair."""
    cos = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(image, dim=-1).T
    q = torch.quantile(cos.abs().flatten().double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return tuple(float(v) for v in q)


def homogeneity(text: torch.Tensor, image: torch.Tensor, min_cluster_size: int) -> tuple[float, int]:
    """(homogeneity of density clusters with respect to modality, number of clusters); noise points
    form one cluster of their own."""
    points = torch.cat([text, image]).double().numpy()
    modality = np.array([0] * len(text) + [1] * len(image))
    clusters = HDBSCAN(min_cluster_size=min_cluster_size, metric="cosine", copy=True).fit_predict(points)
    return float(homogeneity_score(modality, clusters)), int(len(set(clusters) - {-1}))


def analyse(subject: Subject, examples, condition=None, *, min_cluster_size: int = 5, seed: int = 0) -> Result:
    """Cosine band and homogeneity per layer; ``seed`` picks each example's random tokens."""
    if examples.captions is None:
        raise ValueError(f"gap needs captions, but data {examples.name!r} has none; use shapes or flickr30k")
    select = {
        "text": lambda g, i: _one(g.after, i, "text", seed),
        "image": lambda g, i: _one(g.image + g.last, i, "image", seed),
    }
    found = vectors(subject, examples.images, list(examples.captions), condition, select, "gap")
    rows = []
    for layer in range(subject.num_layers):
        text, image = found["text"][:, layer], found["image"][:, layer]
        q25, median, q75 = cosine_band(text, image)
        score, clusters = homogeneity(text, image, min_cluster_size)
        rows.append((layer, median, q25, q75, score, clusters))
    table = pd.DataFrame(rows, columns=["layer", "cos_median", "cos_q25", "cos_q75", "homogeneity", "clusters"])
    summary = {"prompt": "<image>{caption}", "min_cluster_size": min_cluster_size}
    return Result(NAME, table, summary, plot(table, subject))


def plot(table: pd.DataFrame, subject: Subject):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(table.layer, table.cos_median, marker="o")
    left.fill_between(table.layer, table.cos_q25, table.cos_q75, alpha=0.3)
    left.set(xlabel="layer", ylabel="|cos(text, image)|", ylim=(0, 1), title="cosine (median, 25-75%)")
    right.plot(table.layer, table.homogeneity, marker="o")
    right.set(xlabel="layer", ylabel="homogeneity", ylim=(0, 1.02), title="density clusters vs modality")
    figure.suptitle(f"modality gap: {subject.pretrained}", fontsize=9)
    return figure
