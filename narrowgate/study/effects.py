"""The main effects of a factorial study: per factor and measure, the mean at each level over every run at
that level, and each later level's difference from the first listed one with a 95% Welch t interval.

Runs are the units (each seed of each cell is one value), so a level's spread includes the other factors'
effects: the design is balanced (every level of one factor meets the same mixture of the others'), so they
widen the interval without biasing the difference. In a half fraction (I = AB..K) each main effect is
aliased with the interaction of the other k-1 factors (with two factors: with the other main effect).
A run's gate share is its own document-level ratio, left out (and not counted in n) where the run's own
image effect has a CI containing 0.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from narrowgate.study.measures import per_run
from narrowgate.study.plan import Study, level_name
from narrowgate.study.schema import OWN

TABLE = "study_effects"
# column of measures.per_run -> name in the table and plots
MEASURES = {
    "through": "through share",
    "bypass": "bypass share",
    "baseline": "baseline score",
    "attention_gate": "attention to the gate",
    "gate_chi": "gate χ",
    "gap_cosine": "gap |cos|",
    "gap_homogeneity": "gap homogeneity",
    "flip_fraction": "patching flip fraction",
    "giveaway": "giveaway fraction",
}


def welch(low: list[float], high: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean(high) - mean(low), its CI low, CI high, p): Welch's t-test; NaN interval with fewer than two
    values at a level or no spread at either."""
    from scipy.stats import ttest_ind

    if not low or not high:
        return math.nan, math.nan, math.nan, math.nan
    difference = float(np.mean(high) - np.mean(low))
    with warnings.catch_warnings():  # fewer than two values or no spread: scipy's NaN, said by the NaN itself
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_ind(high, low, equal_var=False)
        interval = result.confidence_interval(confidence)
    return difference, float(interval.low), float(interval.high), float(result.pvalue)


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, CI low, CI high) of one level's runs: the t interval; NaN interval below two values."""
    from scipy.stats import t

    if not values:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf((1 + confidence) / 2, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def level_values(study: Study, output: Path) -> dict[str, dict[str, dict[str, dict[str, list[float]]]]]:
    """task -> factor -> level name -> measure -> the defined values of the runs at that level. Under
    ``tasks: own`` each run counts on its own task (task ``own``); otherwise once per task of the config."""
    slots = [(OWN, None)] if study.own_tasks else [(task, task) for task in study.file.tasks]
    out: dict = {}
    for label, task in slots:
        values = [(run, per_run(run, output, task or study.tasks_of(run)[0])) for run in study.runs]
        out[label] = {
            factor: {
                name: {
                    measure: [
                        v[measure] for run, v in values if level_name(dict(run.levels)[factor]) == name and not math.isnan(v[measure])
                    ]
                    for measure in MEASURES
                }
                for name in map(level_name, levels)
            }
            for factor, levels in study.factors.items()
        }
    return out


def main_effects(study: Study, output: Path) -> pd.DataFrame:
    """One row per task, factor, measure and later level: the first level's and this level's mean and n,
    and the difference from the first level with its 95% Welch CI and p."""
    rows = []
    for task, factors in level_values(study, output).items():
        for factor, at in factors.items():
            low, *highs = at
            for measure in MEASURES:
                for high in highs:
                    a, b = at[low][measure], at[high][measure]
                    difference, ci_low, ci_high, p = welch(a, b)
                    rows.append(
                        {
                            "task": task,
                            "factor": factor,
                            "measure": measure,
                            "low": low,
                            "high": high,
                            "mean_low": mean_ci(a)[0],
                            "mean_high": mean_ci(b)[0],
                            "n_low": len(a),
                            "n_high": len(b),
                            "difference": difference,
                            "ci_low": ci_low,
                            "ci_high": ci_high,
                            "p": p,
                        }
                    )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, study: Study) -> str:
    """The section of ``study.md``: one row per factor and measure (per later level and task)."""

    def num(value: float) -> str:
        return "—" if math.isnan(value) else f"{value:.3f}"

    several = frame["task"].nunique() > 1
    header = f"| {'task | ' if several else ''}factor | measure | low → high | mean low (n) | mean high (n) | difference [95% CI] | p |"
    lines = ["## Main effects", "", header, "|" + "---|" * header.count(" | ") + "---|"]
    for _, row in frame.iterrows():
        moved = "**" if row["ci_low"] > 0 or row["ci_high"] < 0 else ""
        lines.append(
            f"| {row['task'] + ' | ' if several else ''}{row['factor']} | {MEASURES[row['measure']]} | "
            f"{row['low']} → {row['high']} | {num(row['mean_low'])} ({row['n_low']}) | "
            f"{num(row['mean_high'])} ({row['n_high']}) | "
            f"{moved}{num(row['difference'])} [{num(row['ci_low'])}, {num(row['ci_high'])}]{moved} | {num(row['p'])} |"
        )
    k = len(study.factors)
    aliasing = (
        f" Half fraction (defining relation I = {' × '.join(study.factors)}): each main effect is aliased with the "
        f"interaction of the other {k - 1} factor{'s' if k > 2 else ''}, so it is a main effect only if that "
        "interaction is negligible."
        if study.file.fraction == "half"
        else ""
    )
    lines += [
        "",
        (
            "Mean of each measure over every run (seed × cell) at a factor's level; *difference*: later level − "
            "first listed level with a 95% Welch t interval over runs (bold: the interval excludes 0); n: runs "
            "with a defined value (a run's gate share is undefined where its own image effect's CI contains 0). "
            "The other factors vary within each level (balanced), so they widen the interval without biasing "
            f"the difference.{aliasing}"
        ),
        "",
    ]
    return "\n".join(lines)
