"""Sweeps: one condition (a flow, or any knockout) over sliding layer windows or single heads, on a task.

Each window is a condition (``plan.py``); they run as the conditions of a one-model grid (``runner.py``:
side by side in one batched pass, the shared prefix prefilled once, one lmms-eval run and folder per
window, resumable), and each window's score change from the baseline gets a paired bootstrap interval
over the documents (the leaderboard's). ``output.py`` writes the table (CSV, JSON), the plot of the
change vs window start (Zhang et al.'s figure) and the terminal summary; ``cli.py`` is ``narrowgate sweep``.

    narrowgate sweep --pretrained narrowgate/assets/toy_chameleon_planted --family chameleon \\
        --task narrowgate_smoke_vqa --condition gate_ablated --window 1 --window 2 --output runs/sweep
"""

from narrowgate.sweep.cli import configure, run
from narrowgate.sweep.plan import Window, condition_specs, head_windows, layer_windows
from narrowgate.sweep.runner import Sweep, SweepResult, WindowResult, run_sweep

__all__ = [
    "Sweep",
    "SweepResult",
    "Window",
    "WindowResult",
    "condition_specs",
    "configure",
    "head_windows",
    "layer_windows",
    "run",
    "run_sweep",
]
