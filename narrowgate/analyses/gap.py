"""The modality gap per layer (the paper's Fig. 2).

Two prompts per image, as the paper: image->caption (the image, then its caption) gives one random
caption token's residual, caption->image (the caption, then the image) one random image token's (layer
outputs), so the image token has read the text as the text token has read the image. Cosine: the median
and quartiles of |cos(text_i, image_j)| over all pairs. Homogeneity: the 2n vectors are clustered by
density peaks that assign every point (``narrowgate.analyses.clustering``, the paper's advanced density
peaks, k = 16, merging confidence ``z`` = 1.65) and ``homogeneity_score(modality, clusters)`` says how
purely the clusters separate the modalities (1: every cluster holds one modality). ``z`` is the one
free parameter: the table gives the lowest and highest homogeneity over ``Z_SWEEP`` beside it.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import homogeneity_score

from .clustering import Z, density_peaks
from .output import Result
from .plotting import layer_axis, legend_outside, stairs, title
from .subject import Subject, vectors

NAME = "gap"
HELP = "modality gap: |cos| between image-token and text-token residuals and cluster homogeneity, per layer"
Z_SWEEP = (1.0, 1.65, 2.5, 4.0)  # merging confidences the homogeneity's sensitivity is read over


def _one(positions, i: int, purpose: str, seed: int) -> tuple[int, ...]:
    if not positions:
        return ()
    return (random.Random(f"{purpose}:{seed}:{i}").choice(positions),)


def cosine_band(text: torch.Tensor, image: torch.Tensor) -> tuple[float, float, float]:
    """(25%, median, 75%) of |cos| over every (text_i, image_j) pair."""
    cos = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(image, dim=-1).T
    q = torch.quantile(cos.abs().flatten().double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return tuple(float(v) for v in q)


def homogeneity(text: torch.Tensor, image: torch.Tensor, z: float = Z) -> tuple[float, int]:
    """(homogeneity of the density-peak clusters with respect to modality, number of clusters); every
    point belongs to a cluster."""
    points = torch.cat([text, image]).double().numpy()
    modality = np.array([0] * len(text) + [1] * len(image))
    clusters = density_peaks(points, z=z)
    return float(homogeneity_score(modality, clusters)), int(clusters.max() + 1)


def analyse(subject: Subject, examples, condition=None, *, z: float = Z, seed: int = 0) -> Result:
    """Cosine band and homogeneity per layer; ``z``: the clustering's merging confidence; ``seed`` picks
    each example's random tokens."""
    if examples.captions is None:
        raise ValueError(f"gap needs captions, but data {examples.name!r} has none; use shapes or flickr30k")
    captions = list(examples.captions)
    text = vectors(subject, examples.images, captions, condition, {"text": lambda g, i: _one(g.after, i, "text", seed)}, "gap: image->caption")
    image = vectors(
        subject, examples.images, captions, condition, {"image": lambda g, i: _one(g.image + g.last, i, "image", seed)},
        "gap: caption->image", image_last=True,
    )
    rows = []
    for layer in range(subject.num_layers):
        t, v = text["text"][:, layer], image["image"][:, layer]
        q25, median, q75 = cosine_band(t, v)
        score, clusters = homogeneity(t, v, z)
        sweep = [homogeneity(t, v, other)[0] for other in Z_SWEEP]
        rows.append((layer, median, q25, q75, score, min(sweep), max(sweep), clusters))
    columns = ["layer", "cos_median", "cos_q25", "cos_q75", "homogeneity", "homogeneity_low", "homogeneity_high", "clusters"]
    table = pd.DataFrame(rows, columns=columns)
    summary = {
        "prompts": {"text token": "<image>{caption}", "image token": "{caption}<image>"},
        "clustering": "density peaks (kNN density k=16, TwoNN intrinsic dimension), every point assigned",
        "z": z,
        "z_sweep": list(Z_SWEEP),
        "cos_median_range": [float(table.cos_median.min()), float(table.cos_median.max())],
        "homogeneity_range": [float(table.homogeneity.min()), float(table.homogeneity.max())],
        "homogeneity_sweep_range": [float(table.homogeneity_low.min()), float(table.homogeneity_high.max())],
    }
    report = (
        f"modality gap over {subject.num_layers} layers: median |cos| {table.cos_median.min():.2f}-{table.cos_median.max():.2f}; "
        f"homogeneity {table.homogeneity.min():.2f}-{table.homogeneity.max():.2f} at z={z} "
        f"({table.homogeneity_low.min():.2f}-{table.homogeneity_high.max():.2f} over z in {list(Z_SWEEP)})"
    )
    figure = plot(table, title("modality gap", subject, condition, f"n={len(examples)} images x 2 prompts"), subject.num_layers, z)
    return Result(NAME, table, summary, figure, report)


def plot(table: pd.DataFrame, heading: str, num_layers: int, z: float):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    stairs(left, table.layer, table.cos_q75, baseline=table.cos_q25, fill=True, alpha=0.3, label="25-75%")
    stairs(left, table.layer, table.cos_median, label="median", linewidth=1.5)
    left.set(ylabel="|cos(text, image)|", ylim=(0, 1), title="cosine")
    stairs(right, table.layer, table.homogeneity_high, baseline=table.homogeneity_low, fill=True, alpha=0.3, label=f"z in {list(Z_SWEEP)}")
    stairs(right, table.layer, table.homogeneity, label=f"z = {z}", linewidth=1.5)
    right.set(ylabel="homogeneity", ylim=(0, 1.02), title="density-peak clusters vs modality")
    for ax in (left, right):
        layer_axis(ax, num_layers)
        legend_outside(ax)
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    return figure
