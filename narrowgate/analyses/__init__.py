"""The paper's evidence beyond the ablation table, one analysis per module (``narrowgate analyze NAME``).

``attention`` (Fig. 3), ``gap`` (Fig. 2), ``overlap`` (Fig. 4), ``patching`` (Fig. 5), ``locate`` (rank
every candidate position as the gate) and ``progressive`` (Fig. A3). Each module has ``NAME``, ``HELP``
and ``analyse(subject, examples, condition=None, *, settings) -> output.Result`` (its settings are typed
keyword parameters); ``narrowgate.analyses.cli`` loads the model and data, calls one with the flags of
its settings and writes ``OUTPUT/NAME.{csv,json,png}``. Definitions follow
../shared/paper/ANALYSES.md; ``subject`` holds the passes they share, ``data`` the labelled images.
"""

ANALYSES: tuple[str, ...] = ("attention", "gap", "overlap", "patching", "locate", "progressive")
