"""Activation patching of the gate, layer by layer (the paper's Fig. 5).

Pairs of images whose answers differ (base, target), asked the same question. Three runs per pair: the
base (its gate recorded at the input of every layer, ``record_gate``), the target, and the target with
the gate's input to layer l replaced by the base's (``patch_gate``): ``single`` patches layer l only,
``cumulative`` every layer from l to the last. Metrics at the last prompt position, with d =
logit(target answer) - logit(base answer): ``flip_fraction``, among the pairs whose unpatched target run
prefers the target answer (d > 0), the fraction whose patched run prefers the base answer (d < 0: the
patch moved the answer toward the source); ``flip_either``, the fraction of all pairs whose sign of d
changes either way (the earlier count, kept beside it); and sum_v min(p_patched(v), p_base(v)) (1: the
patched run answers like the base image). Runs under the chosen condition.
"""

from __future__ import annotations

import random

import pandas as pd
import torch

from interventions import patch_gate, record_gate
from narrowgate_tasks import prompts

from .output import Result
from .plotting import layer_axis, legend_outside, stairs, title
from .subject import Subject

NAME = "patching"
HELP = "patch the gate's residual from a base image into a target image, layer by layer: flips and overlap"


def pairs_of(labels: dict[str, tuple[str, ...]], n_pairs: int, seed: int) -> list[tuple[str, int, int]]:
    """``n_pairs`` (label kind, base, target) with different labels, spread over the kinds, seeded."""
    rng = random.Random(seed)
    kinds = list(labels)
    out = []
    for number in range(n_pairs):
        kind = kinds[number % len(kinds)]
        values = labels[kind]
        base = rng.randrange(len(values))
        others = [i for i, v in enumerate(values) if v != values[base]]
        if not others:
            raise ValueError(f"patching needs images with different {kind} labels; all are {values[base]!r}")
        out.append((kind, base, rng.choice(others)))
    return out


def patch_runs(subject: Subject, examples, pairs, condition, layer_sets: dict[str, list[tuple[int, ...]]]):
    """Per pair: p_base, p_target and, for each (mode, layers) in ``layer_sets``, p_patched, all at the
    last prompt position; plus the answer ids (base, target) of every pair."""
    images, requests = examples.images, {kind: prompts.vqa_request(q) for kind, q in examples.questions.items()}
    base_p, target_p, patched = [], [], {(m, ls): [] for m, sets in layer_sets.items() for ls in sets}
    answers = []
    chunks = range(0, len(pairs), subject.batch_size)
    from tqdm import tqdm

    for start in tqdm(chunks, desc="patching", unit="batch", leave=False):
        chunk = pairs[start : start + subject.batch_size]
        keys = [f"{start + i}" for i in range(len(chunk))]
        texts = [requests[kind] for kind, _, _ in chunk]
        base_in, base_lay, _ = subject.encode([images[b] for _, b, _ in chunk], texts, keys)
        target_in, target_lay, _ = subject.encode([images[t] for _, _, t in chunk], texts, keys)
        with record_gate(subject.model, base_lay) as recording, subject.under(condition, base_lay):
            base_p.append(subject.forward(base_in))
        with subject.under(condition, target_lay):
            target_p.append(subject.forward(target_in))
        for (mode, layers), out in patched.items():
            with subject.under(condition, target_lay), patch_gate(subject.model, recording, target_lay, list(layers)):
                out.append(subject.forward(target_in))
        answers += [
            (subject.answer_id(examples.labels[kind][b]), subject.answer_id(examples.labels[kind][t])) for kind, b, t in chunk
        ]
    return torch.cat(base_p), torch.cat(target_p), {key: torch.cat(v) for key, v in patched.items()}, torch.tensor(answers)


def logit_difference(p: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """logit(target answer) - logit(base answer) per pair (= the difference of log-probabilities)."""
    logp = p.clamp_min(1e-30).log()
    rows = torch.arange(len(p))
    return logp[rows, answers[:, 1]] - logp[rows, answers[:, 0]]


def overlap(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_v min(p(v), q(v)) per row."""
    return torch.minimum(p, q).sum(dim=-1)


def flips(p_target: torch.Tensor, p_patched: torch.Tensor, answers: torch.Tensor) -> dict[str, float]:
    """``toward_source``: among the pairs whose unpatched target run prefers the target answer
    (logit difference > 0), the fraction whose patched run prefers the base (source) answer; ``either``:
    the fraction of all pairs whose sign changes in either direction; ``eligible``: how many pairs the
    first counts over."""
    before, after = logit_difference(p_target, answers), logit_difference(p_patched, answers)
    eligible = before > 0
    toward = float((after[eligible] < 0).float().mean()) if eligible.any() else float("nan")
    return {"toward_source": toward, "either": float((after.sign() != before.sign()).float().mean()), "eligible": int(eligible.sum())}


def analyse(subject: Subject, examples, condition=None, *, pairs: int = 48, seed: int = 0) -> Result:
    """Flips and overlap per patched layer (single and cumulative) on ``pairs`` seeded pairs."""
    examples.require_labels(NAME)
    pairs = pairs_of(examples.labels, pairs, seed)
    layers = range(subject.num_layers)
    layer_sets = {"single": [(l,) for l in layers], "cumulative": [tuple(range(l, subject.num_layers)) for l in layers]}
    p_base, p_target, patched, answers = patch_runs(subject, examples, pairs, condition, layer_sets)
    rows = []
    for (mode, chosen), p in patched.items():
        counted = flips(p_target, p, answers)
        rows.append((chosen[0], mode, counted["toward_source"], counted["either"], float(overlap(p, p_base).mean())))
    table = pd.DataFrame(rows, columns=["layer", "mode", "flip_fraction", "flip_either", "overlap"])
    eligible = flips(p_target, p_target, answers)["eligible"]
    single = table[table["mode"] == "single"].set_index("layer")
    summary = {
        "pairs": len(pairs),
        "eligible_pairs": eligible,
        "flip_definition": "flip_fraction: pairs whose unpatched run prefers the target answer and whose patched run "
        "prefers the base (source) answer, over the former; flip_either: sign changes in either direction, over all pairs",
        "question_kinds": sorted({kind for kind, _, _ in pairs}),
        "overlap_unpatched": float(overlap(p_target, p_base).mean()),
        "target_answer_ahead": eligible / len(pairs),
        "max_flip_fraction_single": float(single.flip_fraction.max()) if eligible else None,
    }
    cumulative = table[table["mode"] == "cumulative"].set_index("layer")
    report = f"gate patching: {eligible} of {len(pairs)} pairs prefer the target answer unpatched"
    if eligible:
        report += (
            f"; flips toward the source {single.flip_fraction.max():.2f} at best for one layer (layer "
            f"{int(single.flip_fraction.idxmax())}), {cumulative.flip_fraction.loc[0]:.2f} for every layer"
        )
    report += f"; either direction, every layer: {cumulative.flip_either.loc[0]:.2f}"
    figure = plot(table, summary, title("gate patching", subject, condition, f"n={len(pairs)} pairs"), subject.num_layers)
    return Result(NAME, table, summary, figure, report)


def plot(table: pd.DataFrame, summary: dict, heading: str, num_layers: int):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    for (mode, curve), colour in zip(table.groupby("mode", sort=False), ("tab:blue", "tab:orange")):
        stairs(left, curve.layer, curve.flip_fraction, label=f"{mode}: toward source", color=colour, linewidth=1.5)
        stairs(left, curve.layer, curve.flip_either, label=f"{mode}: either way", color=colour, linestyle=":", linewidth=1.5)
        stairs(right, curve.layer, curve.overlap, label=mode, color=colour, linewidth=1.5)
    right.axhline(summary["overlap_unpatched"], color="grey", linestyle=":", label="unpatched")
    left.set(ylabel="flip fraction", ylim=(0, 1.02), title=f"answer flips ({summary['eligible_pairs']} eligible pairs)")
    right.set(ylabel="sum min(p_patched, p_base)", ylim=(0, 1.02), title="overlap with the base run")
    for ax in (left, right):
        layer_axis(ax, num_layers, label="patched layer (cumulative: from it to the last)")
        legend_outside(ax)
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    return figure
