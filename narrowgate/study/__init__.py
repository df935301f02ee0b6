"""Studies that train many toy models and measure each: ``narrowgate study emergence CONFIG --output DIR``.

The emergence study asks which training regime makes a gate form by itself. From one YAML config it
varies ``ToyRecipe`` fields one at a time around a base recipe (``factors:``), trains every cell with
every seed (``train-toy`` processes, ``jobs`` at a time), evaluates all checkpoints in one lmms-eval grid
under the ablation conditions, measures each (gate share, attention to the gate, patching flips) and
writes one table and one plot per factor. Every step resumes: rerun the same command after a stop.

Output layout::

    OUTPUT/study.json                       the config as run, with every run's full recipe
    OUTPUT/runs/<cell>/seed<N>/             recipe.json, train.log, model/ (the checkpoint),
                                            gate_share.json, attention.{json,csv,png}, patching.{json,csv,png}
    OUTPUT/references/<toy>/                the measure files of a shipped toy (``references:``)
    OUTPUT/grid/                            the lmms-eval grid (``narrowgate.grid``'s layout)
    OUTPUT/study.csv, OUTPUT/study.md       the table; OUTPUT/plots/<factor>.png

A cell is ``base`` or ``<factor>=<level>`` (e.g. ``image_loss=0``); a run is ``<cell>/seed<N>``.
"""

# One file per concern: schema (the config's keys), plan (cells, runs, folder names), training,
# evaluation, aggregate (the table, the two-level bootstrap), plots, cli.

from narrowgate.study.cli import configure, run

__all__ = ["configure", "run"]
