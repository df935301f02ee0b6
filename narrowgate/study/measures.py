"""A checkpoint's measure files (``evaluation.py`` writes them) read back as one value per run: what the
table's per-seed columns and the main effects (``effects.py``) are computed from."""

from __future__ import annotations

import json
import math
from pathlib import Path

from narrowgate.leaderboard.collect import BASELINE
from narrowgate.leaderboard.summary import SHARES
from narrowgate.study.plan import Reference, Run

# column -> (measure file, key): one number per checkpoint, whatever the task (None when there is none)
PER_CHECKPOINT = {
    "attention_gate": ("attention", "gate_vs_image"),
    "flip_fraction": ("patching", "flip_fraction"),
    "gap_cosine": ("gap", "gap_cosine"),
    "gap_homogeneity": ("gap", "gap_homogeneity"),
    "gate_chi": ("overlap", "gate_chi"),
    "image_chi": ("overlap", "image_chi"),
    "curve_accuracy": ("curve", "final_accuracy"),
    "giveaway": ("giveaway", "fraction"),
}


def read(checkpoint: Run | Reference, output: Path, name: str) -> dict:
    """The checkpoint's ``name.json``."""
    return json.loads((checkpoint.folder(output) / f"{name}.json").read_text())


def value(checkpoint: Run | Reference, output: Path, column: str) -> float:
    """One ``PER_CHECKPOINT`` column of a checkpoint; NaN where the file says None."""
    name, key = PER_CHECKPOINT[column]
    found = read(checkpoint, output, name)[key]
    return math.nan if found is None else float(found)


def per_run(run: Run | Reference, output: Path, task: str) -> dict[str, float]:
    """Every per-checkpoint column, plus on ``task`` the baseline score and each gate share of this run
    alone (its document-level ratio; NaN where the run's own image effect has a CI containing 0)."""
    shares = read(run, output, "gate_share")["tasks"][task]
    values = {"baseline": float(shares["means"][BASELINE])}
    values |= {share: math.nan if shares[share] is None else float(shares[share]["ratio"]) for share in SHARES}
    return values | {column: value(run, output, column) for column in PER_CHECKPOINT}
