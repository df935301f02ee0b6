"""The study's table: one row per cell (and task), its measures as mean over seeds with their spread.

A gate share's CI must account for both sources of variation: which seed was trained (the question is
about the training regime, not one model) and which documents were asked. ``seed_bootstrap_ratio``
resamples seeds, then documents within each resampled seed, and takes the mean of the per-seed ratios.
With one seed it is the document bootstrap of ``narrowgate.core.stats.paired_bootstrap_ratio``.

Two cases the bootstrap misreports, said plainly instead: where the image effect's CI (the same two-level
bootstrap) contains 0 the shares are undefined; where a knockout changed no answer of any seed the
bootstrap's [0, 0] looks exact, so the table gives the exact one-sided Clopper-Pearson bound on the rate
of changed answers ("0 of 96 seed×question answers changed: at most 3.1% at 95%").

Each cell also says what it could have seen: ``through_detectable``, the smallest through-share a
two-sided 5% test would detect with 80% power (2.8 standard errors), and ``bar``, whether the cell meets
the study's bar for a gate formed from scratch (``BAR``). A factorial study adds its main effects
(``effects.py``: ``study_effects.csv`` and a section of ``study.md``).
"""

from __future__ import annotations

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
from narrowgate.study import effects
from narrowgate.study.evaluation import CONVERGED_WITHIN
from narrowgate.study.measures import PER_CHECKPOINT, read, value
from narrowgate.study.plan import Run, Study, level_name

TABLE = "study"
# the bar for "a gate formed from scratch" (issue 22): through-share >= 0.5 with its 95% CI above 0.3 over
# >= 3 seeds, and gate_only keeping >= 80% of the image's effect (bypass share <= 0.2)
BAR = {"through": 0.5, "through_ci_low": 0.3, "seeds": 3, "bypass": 0.2}
DETECTABLE_SE = 1.96 + 0.84  # standard errors a two-sided 5% test needs to detect an effect with 80% power
CI_WIDTH_SE = 2 * 1.96  # a 95% CI's width in standard errors


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


def detectable(ci_low: float, ci_high: float, *, changed_at_most: float, image_effect: float, bootstrap: bool) -> float:
    """The smallest share a two-sided 5% test detects with 80% power: ``DETECTABLE_SE`` standard errors,
    the SE from the 95% CI's width. ``bootstrap`` False (no share defined, or no answer changed): the CI is
    taken as [0, the exact bound on the rate of changed answers / the image effect]; NaN without an effect."""
    if not bootstrap:
        if not image_effect > 0:
            return math.nan
        ci_low, ci_high = 0.0, changed_at_most / image_effect
    return DETECTABLE_SE * (ci_high - ci_low) / CI_WIDTH_SE


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def _fmt(values: Sequence[float]) -> str:
    return " ".join("nan" if math.isnan(v) else f"{v:.3f}" for v in values)


def cell_columns(run: Run) -> tuple[str, str]:
    """(factor, level) of a run's cell: ``base``/"" for the base cell, ``image_loss``/``0`` for a one-factor
    cell, the factors and levels joined by ``+`` for a factorial cell."""
    return "+".join(f for f, _ in run.levels) or "base", "+".join(level_name(v) for _, v in run.levels)


def table(study: Study, output: Path, n_resamples: int = 10_000) -> pd.DataFrame:
    """One row per cell and task (the cells in plan order, then the references), from the measure files."""
    groups: dict[tuple[str, str, str], list] = {}
    for run in study.runs:
        groups.setdefault((*cell_columns(run), run.cell), []).append(run)
    for reference in study.references:
        groups[("reference", reference.toy, reference.id)] = [reference]
    rows = []
    for (factor, level, cell), members in groups.items():
        shares = [read(m, output, "gate_share")["tasks"] for m in members]
        measured = {column: [value(m, output, column) for m in members] for column in PER_CHECKPOINT}
        curves = [read(m, output, "curve")["converged"] for m in members]
        seeds = [m.seed for m in members] if isinstance(members[0], Run) else []
        for task in study.tasks_of(members[0]):
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
                "seeds": " ".join(map(str, seeds)),
                "baseline": float(np.mean([p["means"][BASELINE] for p in per])),
                "baseline_per_seed": _fmt([p["means"][BASELINE] for p in per]),
                "image_effect": effect.mean,
                "image_effect_ci_low": effect.ci_low,
                "image_effect_ci_high": effect.ci_high,
                "image_effect_per_seed": _fmt(effect.per_seed),
                "shares_defined": not undefined,
            }
            detectable_shares = {}
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
                detectable_shares[f"{share}_detectable"] = detectable(
                    row[f"{share}_ci_low"],
                    row[f"{share}_ci_high"],
                    changed_at_most=row[f"{share}_changed_at_most"],
                    image_effect=effect.mean,
                    bootstrap=ratio is not None and changed > 0,
                )
            row["through_above_zero"] = bool(row["through_ci_low"] > 0)
            for column in ("attention_gate", "flip_fraction"):
                row |= {f"{column}_{k}": v for k, v in _spread(measured[column]).items()}
                row[f"{column}_per_seed"] = _fmt(measured[column])
            for column in ("gap_cosine", "gap_homogeneity", "gate_chi", "image_chi"):
                row |= {f"{column}_{k}": v for k, v in _spread(measured[column]).items()}
            with_curve = [c for c in curves if c is not None]  # converged seeds k of the n that have a curve
            row["converged"] = f"{sum(with_curve)}/{len(with_curve)}" if with_curve else ""
            for column in ("curve_accuracy", "giveaway"):
                row |= {f"{column}_{k}": v for k, v in _spread(measured[column]).items()}
                row[f"{column}_per_seed"] = _fmt(measured[column])
            row |= detectable_shares
            row["bar"] = bool(
                row["through"] >= BAR["through"]
                and row["through_ci_low"] > BAR["through_ci_low"]
                and len(seeds) >= BAR["seeds"]
                and row["bypass"] <= BAR["bypass"]
            )
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
        if math.isnan(row[f"{name}_mean"]):  # e.g. no learning curve: a reference, or trained before curves
            return "—"
        return f"{num(row[f'{name}_mean'])} ({num(row[f'{name}_min'])}–{num(row[f'{name}_max'])})"

    def cell(row) -> list[str]:
        """The cell's leading columns: factor and level, or in a factorial design one level per factor."""
        if not study.factorial:
            return [row["factor"], row["level"]]
        if row["factor"] == "reference":
            return [f"reference: {row['level']}", *[""] * (len(study.factors) - 1)]
        return row["level"].split("+")

    leading = list(study.factors) if study.factorial else ["factor", "level"]
    header = (
        f"| {' | '.join(leading)} | task | seeds | baseline | converged | final curve accuracy | giveaway | "
        "image effect | through | through per seed | bypass | through > 0 | detectable through | bar | "
        "attention to gate | patching flips | gap \\|cos\\| | homogeneity | gate χ | image χ |"
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
            f"| {' | '.join(cell(row))} | {row['task']} | {seeds} | {num(row['baseline'])} | {row['converged'] or '—'} | "
            f"{spread(row, 'curve_accuracy')} | {spread(row, 'giveaway')} | {effect(row)} | "
            f"{share(row, 'through')} | {per_seed(row, 'through')} | {share(row, 'bypass')} | "
            f"{'yes' if row['through_above_zero'] else 'no'} | {num(row['through_detectable'])} | "
            f"{'**yes**' if row['bar'] else 'no'} | "
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
        (
            "*converged*: seeds whose learning curve (teacher-forced accuracy on unseen drawings during training) "
            "was flat at the end: the mean of its last fifth of points within "
            f"{CONVERGED_WITHIN} of the fifth before, of the seeds with a curve; *final curve accuracy*: its last "
            "point, mean (range over seeds). *giveaway*: the fraction of (evaluation drawing, question) pairs with "
            "an image token whose code alone names the answer (≥ 99% pure on training drawings; "
            "narrowgate.toy.giveaway), mean (range). *detectable through*: the smallest through-share this cell "
            "could have detected (80% power, two-sided 5%): 2.8 × its standard error, the SE taken from the 95% "
            "CI's width / 3.92; where no share is defined or no answer changed, from the CI [0, exact bound on the "
            "rate of changed answers / image effect] (— without an image effect). *bar*: through ≥ "
            f"{BAR['through']} with its CI's low end > {BAR['through_ci_low']}, ≥ {BAR['seeds']} seeds, and bypass ≤ "
            f"{BAR['bypass']} (gate_only keeps ≥ {1 - BAR['bypass']:.0%} of the image's effect)."
        ),
        "",
    ]
    return "\n".join(lines)


def write_table(study: Study, output: Path, n_resamples: int = 10_000) -> pd.DataFrame:
    """``OUTPUT/study.csv`` and ``OUTPUT/study.md`` (a factorial study: with its main effects, also in
    ``OUTPUT/study_effects.csv``), written atomically."""
    frame = table(study, output, n_resamples)
    text = markdown(frame, study)
    if study.factorial:
        main = effects.main_effects(study, output)
        write_atomic(output / f"{effects.TABLE}.csv", main.to_csv(index=False).encode())
        text += "\n" + effects.markdown(main, study)
    write_atomic(output / f"{TABLE}.csv", frame.to_csv(index=False).encode())
    write_atomic(output / f"{TABLE}.md", text.encode())
    return frame
