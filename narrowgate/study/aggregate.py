"""The study's table: one row per cell (and task), its measures as mean over seeds with their spread.

A gate share's CI must account for both sources of variation: which seed was trained (the question is
about the training regime, not one model) and which documents were asked. ``seed_bootstrap_ratio``
resamples seeds, then documents within each resampled seed, and takes the mean of the per-seed ratios.
With one seed it is the document bootstrap of ``narrowgate.core.stats.paired_bootstrap_ratio``.

Two cases the bootstrap misreports, said plainly instead: where the image effect's CI (the same two-level
bootstrap) contains 0 the shares are undefined; where a knockout changed no answer of any seed the
bootstrap's [0, 0] looks exact, so the table gives the exact one-sided Clopper-Pearson bound on the rate
of changed answers ("0 of 96 seed×question answers changed: at most 3.1% at 95%").
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from narrowgate.core.files import write_atomic
from narrowgate.core.stats import resampled_means
from narrowgate.leaderboard.collect import BASELINE
from narrowgate.leaderboard.summary import IMAGE_ABLATED, SHARES
from narrowgate.study.plan import BASE, Reference, Run, Study, level_name

TABLE = "study"


@dataclass(frozen=True)
class SeedRatio:
    """The mean over seeds of each seed's ratio mean(numerator)/mean(denominator), with a two-level
    percentile bootstrap CI; ``per_seed`` is NaN for a seed whose denominator's mean is 0 (left out)."""

    mean: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    n_resamples: int
    undefined: int  # resamples left out: every resampled seed had a zero denominator


def seed_bootstrap_ratio(
    seeds: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> SeedRatio | None:
    """``seeds``: per seed, (numerator, denominator) per document. Each resample draws the seeds with
    replacement, then each drawn seed's documents with replacement (independently per draw), and averages
    the drawn seeds' ratios. None when no seed has a nonzero mean denominator."""
    arrays = [(np.asarray(n, dtype=np.float64), np.asarray(d, dtype=np.float64)) for n, d in seeds]
    per_seed = np.array([n.mean() / d.mean() if d.mean() != 0 else math.nan for n, d in arrays])
    defined = [i for i, value in enumerate(per_seed) if not math.isnan(value)]
    if not defined:
        return None
    k = len(defined)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_resamples, k))
    ratios = np.empty((k, n_resamples, k))  # [seed, resample, draw]: that seed's ratio on its own resample
    for s, index in enumerate(defined):
        num, den = resampled_means(list(arrays[index]), n_resamples=n_resamples * k, seed=seed + 1 + s)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[s] = np.where(den != 0, num / np.where(den != 0, den, 1), np.nan).reshape(n_resamples, k)
    with warnings.catch_warnings():  # a resample whose every drawn seed is undefined is NaN, counted below
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmean(ratios[draws, np.arange(n_resamples)[:, None], np.arange(k)[None, :]], axis=1)
    kept = values[~np.isnan(values)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(kept, [alpha, 1 - alpha])
    return SeedRatio(
        float(np.mean(per_seed[defined])),
        float(low),
        float(high),
        tuple(map(float, per_seed)),
        n_resamples,
        int(values.size - kept.size),
    )


def changed_at_most(changed: int, answers: int, confidence: float = 0.95) -> float:
    """The exact one-sided Clopper-Pearson upper bound on the rate of changed answers (0 of 96: 0.031)."""
    from scipy.stats import binomtest

    return float(binomtest(changed, answers, alternative="less").proportion_ci(confidence, method="exact").high)


def _read(checkpoint: Run | Reference, output: Path, name: str) -> dict:
    return json.loads((checkpoint.folder(output) / f"{name}.json").read_text())


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def _fmt(values: Sequence[float]) -> str:
    return " ".join("nan" if math.isnan(v) else f"{v:.3f}" for v in values)


def table(study: Study, output: Path, n_resamples: int = 10_000) -> pd.DataFrame:
    """One row per cell and task (base, each factor level, then the references), from the measure files."""
    groups: dict[tuple[str, str, str], list[Run | Reference]] = {}
    for run in study.runs:
        key = ("base", "", BASE) if run.factor is None else (run.factor, level_name(run.level), run.cell)
        groups.setdefault(key, []).append(run)
    for reference in study.references:
        groups[("reference", reference.toy, reference.id)] = [reference]
    rows = []
    for (factor, level, cell), members in groups.items():
        shares = [_read(m, output, "gate_share")["tasks"] for m in members]
        attention = [_read(m, output, "attention")["gate_vs_image"] for m in members]
        flips = [_read(m, output, "patching")["flip_fraction"] for m in members]
        per_checkpoint = {  # measure column -> (file, key): one value per seed
            "gap_cosine": ("gap", "gap_cosine"),
            "gap_homogeneity": ("gap", "gap_homogeneity"),
            "gate_chi": ("overlap", "gate_chi"),
            "image_chi": ("overlap", "image_chi"),
        }
        measured = {column: [_read(m, output, name)[key] for m in members] for column, (name, key) in per_checkpoint.items()}
        for task in study.file.tasks:
            per = [s[task] for s in shares]
            effects = [np.subtract(p["scores"][BASELINE], p["scores"][IMAGE_ABLATED]) for p in per]
            effect = seed_bootstrap_ratio([(e, np.ones(e.size)) for e in effects], n_resamples=n_resamples)
            undefined = effect.ci_low <= 0 <= effect.ci_high
            row = {
                "factor": factor,
                "level": level,
                "cell": cell,
                "task": task,
                "metric": per[0]["metric"],
                "seeds": " ".join(str(m.seed) for m in members) if isinstance(members[0], Run) else "",
                "baseline": float(np.mean([p["means"][BASELINE] for p in per])),
                "baseline_per_seed": _fmt([p["means"][BASELINE] for p in per]),
                "image_effect": effect.mean,
                "image_effect_ci_low": effect.ci_low,
                "image_effect_ci_high": effect.ci_high,
                "image_effect_per_seed": _fmt(effect.per_seed),
                "shares_defined": not undefined,
            }
            for share, condition in SHARES.items():
                changes = [np.subtract(p["scores"][BASELINE], p["scores"][condition]) for p in per]
                ratio = (
                    None if undefined else seed_bootstrap_ratio(list(zip(changes, effects)), n_resamples=n_resamples)
                )
                changed, answers = sum(int(np.count_nonzero(c)) for c in changes), sum(c.size for c in changes)
                row |= {
                    share: ratio.mean if ratio else math.nan,
                    f"{share}_ci_low": ratio.ci_low if ratio else math.nan,
                    f"{share}_ci_high": ratio.ci_high if ratio else math.nan,
                    f"{share}_per_seed": _fmt(ratio.per_seed) if ratio else _fmt([math.nan] * len(per)),
                    f"{share}_resamples_left_out": ratio.undefined if ratio else 0,  # no seed with an effect drawn
                    f"{share}_changed": changed,  # seed x question answers whose score the knockout changed
                    f"{share}_answers": answers,
                    f"{share}_changed_at_most": changed_at_most(changed, answers),
                }
            row["through_above_zero"] = bool(row["through_ci_low"] > 0)
            row |= {f"attention_gate_{k}": v for k, v in _spread(attention).items()}
            row["attention_gate_per_seed"] = _fmt(attention)
            row |= {f"flip_fraction_{k}": v for k, v in _spread(flips).items()}
            row["flip_fraction_per_seed"] = _fmt(flips)
            for column, values in measured.items():
                row |= {f"{column}_{k}": v for k, v in _spread(values).items()}
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, study: Study) -> str:
    """The table for reading: shares as mean [95% CI], the other measures as mean (range over seeds)."""

    def num(value: float) -> str:
        return "—" if math.isnan(value) else f"{value:.2f}"

    def share(row, name: str) -> str:
        if not row["shares_defined"]:
            return "undefined: effect CI contains 0"
        if row[f"{name}_changed"] == 0:  # the bootstrap's [0, 0] is no interval: the exact bound instead
            return f"0 of {row[f'{name}_answers']} answers changed: ≤ {row[f'{name}_changed_at_most']:.1%}"
        if math.isnan(row[name]):
            return "undefined"
        dropped = row[f"{name}_resamples_left_out"]
        left_out = f" ({dropped} resamples without effect left out)" if dropped else ""
        return f"{num(row[name])} [{num(row[f'{name}_ci_low'])}, {num(row[f'{name}_ci_high'])}]{left_out}"

    def per_seed(row, name: str) -> str:
        return row[f"{name}_per_seed"] if " " in row["seeds"] else "—"

    def effect(row) -> str:
        return f"{num(row['image_effect'])} [{num(row['image_effect_ci_low'])}, {num(row['image_effect_ci_high'])}]"

    def spread(row, name: str) -> str:
        return f"{num(row[f'{name}_mean'])} ({num(row[f'{name}_min'])}–{num(row[f'{name}_max'])})"

    header = (
        "| factor | level | task | seeds | baseline | image effect | through | through per seed | bypass | "
        "through > 0 | attention to gate | patching flips | gap \\|cos\\| | homogeneity | gate χ | image χ |"
    )
    lines = [
        f"# Emergence study: {study.file.description}".rstrip(": "),
        "",
        header,
        "|" + "---|" * header.count(" | ") + "---|",
    ]
    for _, row in frame.iterrows():
        seeds = row["seeds"] or "—"
        lines.append(
            f"| {row['factor']} | {row['level']} | {row['task']} | {seeds} | {num(row['baseline'])} | {effect(row)} | "
            f"{share(row, 'through')} | {per_seed(row, 'through')} | {share(row, 'bypass')} | "
            f"{'yes' if row['through_above_zero'] else 'no'} | "
            f"{spread(row, 'attention_gate')} | {spread(row, 'flip_fraction')} | {spread(row, 'gap_cosine')} | "
            f"{spread(row, 'gap_homogeneity')} | {spread(row, 'gate_chi')} | {spread(row, 'image_chi')} |"
        )
    lines += [
        "",
        (
            "*image effect*: baseline − image_ablated on the task's metric, mean over seeds with its 95% CI; where "
            "the CI contains 0 no share of it is defined. Gate shares of that effect: *through* = "
            "(baseline − gate_ablated) / effect, *bypass* = (baseline − gate_only) / effect; mean over seeds with a "
            "95% CI from a two-level bootstrap (seeds, then documents within each seed; with 3 seeds the seed level "
            "rests on 3 draws), not bounded to [0, 1]; *through per seed*: each seed's share. Where the knockout "
            "changed no answer of any seed the bootstrap's [0, 0] is no interval: the cell gives the count and the "
            "exact one-sided 95% Clopper-Pearson bound on the rate of changed answers. *attention to gate*: the "
            "gate's share of the text queries' attention to the image tokens + gate (the paper's normalisation), on "
            "the VQA prompts, mean over layers; *patching flips*: among the pairs whose unpatched run prefers the "
            "target answer, the fraction that flips to the source's when the gate's input to every layer comes from "
            "the source image. *gap |cos|* "
            "and *homogeneity*: the modality gap (narrowgate.analyses.gap), mean over layers; *gate χ*, *image χ*: "
            "the best neighbourhood overlap with the drawings' labels over layers (narrowgate.analyses.overlap; "
            "ceiling 1). Those six: mean (range over seeds). A claim needs at least 3 seeds per cell."
        ),
        "",
    ]
    return "\n".join(lines)


def write_table(study: Study, output: Path, n_resamples: int = 10_000) -> pd.DataFrame:
    """``OUTPUT/study.csv`` and ``OUTPUT/study.md``, written atomically."""
    frame = table(study, output, n_resamples)
    write_atomic(output / f"{TABLE}.csv", frame.to_csv(index=False).encode())
    write_atomic(output / f"{TABLE}.md", markdown(frame, study).encode())
    return frame
