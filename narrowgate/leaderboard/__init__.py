"""The leaderboard of a grid folder: one row per model x condition, one column per task metric.

Each entry is the metric as lmms-eval aggregated it; rows other than the baseline also show the change
from the same model's baseline (Δ) with a paired bootstrap 95% CI and p-value over documents
(``narrowgate.core.stats``). Conditions run with several seeds show mean ± std over the seeds (sample std),
and their Δ compares each document's mean over the seeds with its baseline score.

Per-sample scores are read from lmms-eval's samples jsonl: for a metric ``m`` a record must carry
either a number under ``m`` (e.g. VQA accuracy) or a mapping under ``m`` with a numeric ``score``
field (how a caption metric can expose a per-image score next to the data its aggregation needs).
A metric without per-sample scores (e.g. corpus BLEU) gets a Δ of the aggregates and no interval.
Δ and its interval concern the mean per-sample score; when a metric's aggregate is not that mean, the
table says so in a note.
"""

from narrowgate.leaderboard.cli import configure, run
from narrowgate.leaderboard.collect import read_cells
from narrowgate.leaderboard.formatting import legend
from narrowgate.leaderboard.plot import plot_png, write_plot
from narrowgate.leaderboard.render import FORMATS, render, write
from narrowgate.leaderboard.scores import CellResult
from narrowgate.leaderboard.summary import GateShare, gate_share
from narrowgate.leaderboard.table import (
    BASELINE,
    Column,
    Entry,
    Leaderboard,
    Row,
    build,
)

__all__ = [
    "BASELINE",
    "FORMATS",
    "CellResult",
    "Column",
    "Entry",
    "GateShare",
    "Leaderboard",
    "Row",
    "build",
    "configure",
    "gate_share",
    "legend",
    "plot_png",
    "read_cells",
    "render",
    "run",
    "write",
    "write_plot",
]
