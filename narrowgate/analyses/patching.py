"""Activation patching of the gate, layer by layer (the paper's Fig. 5).

Pairs of images whose answers differ (base, target), asked the same question. Three runs per pair: the
base (its gate recorded at the input of every layer, ``record_gate``), the target, and the target with
the gate's input to layer l replaced by the base's (``patch_gate``): ``single`` patches layer l only,
``cumulative`` every layer from l to the last. Metrics at the last prompt position: the fraction of
pairs whose sign of logit(target answer) - logit(base answer) flips, and sum_v min(p_patched(v),
p_base(v)) (1: the patched run answers like the base image). Runs under the chosen condition.
"""

from __future__ import annotations

import random

import pandas as pd
import torch

from interventions import patch_gate, record_gate
from narrowgate_tasks import prompts

from .output import Result
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


def analyse(subject: Subject, examples, condition=None, *, pairs: int = 48, seed: int = 0) -> Result:
    """Flip fraction and overlap per patched layer (single and cumulative) on ``pairs`` seeded pairs."""
    examples.require_labels(NAME)
    pairs = pairs_of(examples.labels, pairs, seed)
    layers = range(subject.num_layers)
    layer_sets = {"single": [(l,) for l in layers], "cumulative": [tuple(range(l, subject.num_layers)) for l in layers]}
    p_base, p_target, patched, answers = patch_runs(subject, examples, pairs, condition, layer_sets)
    target_sign = logit_difference(p_target, answers).sign()
    rows = []
    for (mode, chosen), p in patched.items():
        flips = logit_difference(p, answers).sign() != target_sign
        rows.append((chosen[0], mode, float(flips.float().mean()), float(overlap(p, p_base).mean())))
    table = pd.DataFrame(rows, columns=["layer", "mode", "flip_fraction", "overlap"])
    summary = {
        "pairs": len(pairs),
        "question_kinds": sorted({kind for kind, _, _ in pairs}),
        "overlap_unpatched": float(overlap(p_target, p_base).mean()),
        "target_answer_ahead": float((target_sign > 0).float().mean()),
        "max_flip_fraction_single": float(table[table["mode"] == "single"].flip_fraction.max()),
    }
    return Result(NAME, table, summary, plot(table, summary, subject))


def plot(table: pd.DataFrame, summary: dict, subject: Subject):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for mode, curve in table.groupby("mode", sort=False):
        left.plot(curve.layer, curve.flip_fraction, marker="o", label=mode)
        right.plot(curve.layer, curve.overlap, marker="o", label=mode)
    right.axhline(summary["overlap_unpatched"], color="grey", linestyle=":", label="unpatched")
    left.set(xlabel="patched layer", ylabel="flip fraction", ylim=(0, 1.02), title="logit-difference sign flips")
    right.set(xlabel="patched layer", ylabel="sum min(p_patched, p_base)", ylim=(0, 1.02), title="overlap with the base run")
    right.legend(fontsize=8)
    figure.suptitle(f"gate patching ({summary['pairs']} pairs): {subject.pretrained}", fontsize=9)
    return figure
