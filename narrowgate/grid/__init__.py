"""Run a grid of models x conditions x tasks through lmms-eval, resumably; one folder per cell.

A *cell* is one (model, condition, task) evaluation; a condition with repeats (``seeds:``) gives one
cell per seed. Each model is loaded once and its conditions are switched on the same weights. A
finished cell is a folder holding lmms-eval's own results json and samples jsonl plus ``cell.json``,
which is written last and atomically, so it marks the cell as done: a rerun skips done cells and
redoes anything else; so does a run stopped by Ctrl-C or SIGTERM. A failing cell is recorded with its
error in ``grid.json`` and the grid goes on. Local checkpoint folders, the tasks' data and Java are
checked before any model loads. The terminal gets one line per cell; what lmms-eval and transformers
print goes to ``grid.log`` (``--verbose``: to the terminal, with tracebacks). Under ``torchrun`` or
``accelerate launch`` the grid runs data parallel; ``--only`` splits it over separate jobs.

Output layout::

    OUTPUT/grid.json                          the config as run + each cell's status (rewritten atomically)
    OUTPUT/grid.log                           what the libraries printed while the cells ran
    OUTPUT/_checkpoints/<family>-seed<N>/     tiny checkpoints materialised for ``tiny:`` models
    OUTPUT/<model>/<condition>/<task>/        one finished cell: cell.json (points to the files below),
                                              <checkpoint>/<date>_results.json and
                                              <checkpoint>/<date>_samples_<task>.jsonl (lmms-eval's format)

Config (YAML, read with ``yaml.safe_load``)::

    description: free text                    (optional)
    tasks: [narrowgate_vqav2, ...]            lmms-eval task names from narrowgate_tasks
    limit: 100                                (optional) documents per task; --limit overrides
    model_args: {dtype: bfloat16}             (optional) keyword arguments for every model_wrappers.load_model
    conditions:
      - baseline                              a condition name ...
      - {name: gate_ablated, layers: 16-31, knockout: mask, label: gate_ablated_late}
      - {name: random_image_ablated, k: 10, repeats: 3}     ... or a mapping; repeats: N = seeds 0..N-1,
                                                            or seeds: [..]; a single seed: seed: N
    models:
      - {name: Chameleon-7B, family: chameleon, pretrained: facebook/chameleon-7b, model_args: {device_map: auto}}
      - {name: tiny-chameleon, family: chameleon, tiny: {seed: 0}}   # or tiny: true (seed 0)

``pretrained`` is a hub id or a path; a path starting with ``./`` or ``../`` is relative to the config
file. A local folder that does not exist is one config error before anything runs. ``tiny`` writes a
tiny random checkpoint (as ``narrowgate tiny`` does) under the output folder on first use.
"""

from narrowgate.grid.cells import (
    CELL_FILE,
    GRID_FILE,
    CellStatus,
    GridReport,
    cell_dir,
    iter_done_cells,
    read_done,
)
from narrowgate.grid.cli import configure, run, set_log_level
from narrowgate.grid.config import (
    Cell,
    ConditionSpec,
    ConfigError,
    GridConfig,
    ModelSpec,
    load_config,
    parse_config,
)
from narrowgate.grid.runner import run_grid, select_cells

__all__ = [
    "CELL_FILE",
    "GRID_FILE",
    "Cell",
    "CellStatus",
    "ConditionSpec",
    "ConfigError",
    "GridConfig",
    "GridReport",
    "ModelSpec",
    "cell_dir",
    "configure",
    "iter_done_cells",
    "load_config",
    "parse_config",
    "read_done",
    "run",
    "run_grid",
    "select_cells",
    "set_log_level",
]
