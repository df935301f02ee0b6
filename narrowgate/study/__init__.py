"""Studies that train many toy models and measure each: ``narrowgate study emergence CONFIG --output DIR``.

The emergence study asks which training regime makes a gate form by itself. From one YAML config it
varies ``ToyRecipe`` fields (``factors:``) one at a time around a base recipe or in a (half) factorial
(``design:``, ``fraction:``), trains every cell with every seed (``train-toy`` processes, ``jobs`` at a
time), evaluates all checkpoints in one lmms-eval grid under the ablation conditions (on the config's
tasks, or with ``tasks: own`` each run on its own world's smoke task), measures each (gate share,
attention to the gate, patching flips, modality gap, chi, learning curve, giveaway) and writes one table
with plots (one per factor; a factorial: main effects and learning curves). Every step resumes: rerun the
same command after a stop.

Output layout::

    OUTPUT/study.json                       the config as run, with every run's full recipe
    OUTPUT/runs/<cell>/seed<N>/             recipe.json, train.log, model/ (the checkpoint),
                                            gate_share.json, attention.{json,csv,png}, patching.{json,csv,png},
                                            gap.*, overlap.*, curve.json, giveaway.json
    OUTPUT/references/<toy>/                the measure files of a shipped toy (``references:``)
    OUTPUT/grid/                            the lmms-eval grid (``narrowgate.grid``'s layout)
    OUTPUT/study.csv, OUTPUT/study.md       the table (a factorial: with OUTPUT/study_effects.csv, its main effects)
    OUTPUT/plots/                           <factor>.png; a factorial: main_effects.png, learning_curves.png

A cell is ``base`` or ``<factor>=<level>`` (e.g. ``image_loss=0``) one at a time, and every factor's
``<factor>=<level>`` joined by ``+`` in a factorial (``image_tokens=64+codebook=kmeans``); a run is
``<cell>/seed<N>``.
"""

# One file per concern: schema (the config's keys), plan (cells, runs, folder names), training,
# evaluation (the measure files), measures (reading them back), aggregate (the table, the two-level
# bootstrap), effects (a factorial's main effects), plots, cli.

from narrowgate.study.cli import configure, run

__all__ = ["configure", "run"]
