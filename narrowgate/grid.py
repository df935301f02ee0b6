"""Run a grid of models x conditions x tasks through lmms-eval, resumably; one folder per cell.

A *cell* is one (model, condition, task) evaluation; a condition with repeats (``seeds:``) gives one
cell per seed. Each model is loaded once and its conditions are switched on the same weights. A
finished cell is a folder holding lmms-eval's own results json and samples jsonl plus ``cell.json``,
which is written last and atomically, so it marks the cell as done: a rerun skips done cells and
redoes anything else. A failing cell is recorded with its error in ``grid.json`` and the grid goes on.

Output layout::

    OUTPUT/grid.json                          the config as run + each cell's status (rewritten atomically)
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
file. ``tiny`` writes ``narrowgate.tiny.save(family, seed=...)`` under the output folder on first use.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CELL_FILE = "cell.json"
GRID_FILE = "grid.json"
CHECKPOINTS_DIR = "_checkpoints"
PARTIAL_SUFFIX = ".partial"

TOP_KEYS = ("description", "tasks", "limit", "model_args", "conditions", "models")
MODEL_KEYS = ("name", "family", "pretrained", "tiny", "model_args")
TINY_KEYS = ("seed",)
CONDITION_KEYS = ("name", "label", "layers", "knockout", "k", "seed", "seeds", "repeats")
# keyword arguments of interventions.make_condition that a config may set
CONDITION_PARAMS = ("layers", "knockout", "k", "seed")
# names and labels become folder names
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class ConfigError(ValueError):
    """A grid config that does not follow the schema; the message names the file and the bad key."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the grid: ``pretrained`` (hub id or resolved path) or a tiny checkpoint's seed."""

    name: str
    family: str
    pretrained: str | None
    tiny_seed: int | None
    model_args: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What identifies this model's results (written to cell.json, compared on resume)."""
        source = {"tiny": {"seed": self.tiny_seed}} if self.tiny_seed is not None else {"pretrained": self.pretrained}
        return {"name": self.name, "family": self.family, **source, "model_args": dict(self.model_args)}


@dataclass(frozen=True)
class ConditionSpec:
    """One condition instance: ``name`` for ``interventions.make_condition`` with ``params``; repeats of one
    condition share a ``label`` and differ in ``params['seed']``."""

    label: str
    name: str
    params: dict[str, Any]
    repeated: bool = False

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")

    @property
    def dirname(self) -> str:
        return f"{self.label}-seed{self.seed}" if self.repeated else self.label

    def make(self):
        """The intervention-engine condition object."""
        from interventions import make_condition

        return make_condition(self.name, **self.params)

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "name": self.name, "repeated": self.repeated, **self.params}


@dataclass(frozen=True)
class Cell:
    """One (model, condition, task) evaluation, with its position in the config for ordering tables."""

    model: ModelSpec
    condition: ConditionSpec
    task: str
    order: tuple[int, int, int]

    @property
    def id(self) -> str:
        return f"{self.model.name}/{self.condition.dirname}/{self.task}"

    def record(self, limit: int | None) -> dict[str, Any]:
        """The cell's identity; a done cell is reused only if its stored record is equal."""
        return {
            "cell": self.id,
            "model": self.model.record(),
            "condition": self.condition.record(),
            "task": self.task,
            "limit": limit,
        }


@dataclass(frozen=True)
class GridConfig:
    path: Path
    description: str
    tasks: tuple[str, ...]
    conditions: tuple[ConditionSpec, ...]
    models: tuple[ModelSpec, ...]
    limit: int | None

    def cells(self) -> list[Cell]:
        """Every cell, model-major (a model's cells run together on one load), then condition, then task."""
        labels = list(dict.fromkeys(c.label for c in self.conditions))
        return [
            Cell(model, condition, task, (m, labels.index(condition.label), t))
            for m, model in enumerate(self.models)
            for condition in self.conditions
            for t, task in enumerate(self.tasks)
        ]


# ----------------------------------------------------------------------------------------------- config


def load_config(path: str | os.PathLike) -> GridConfig:
    """Read and validate a grid config; a ConfigError names the file and the offending key."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read grid config {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: Path) -> GridConfig:
    """Validate an already-parsed config mapping (``path`` names it in errors and anchors relative paths)."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping with keys {', '.join(TOP_KEYS)}; got {_kind(data)}")
    _check_keys(data, TOP_KEYS, "", fail)
    for key in ("tasks", "conditions", "models"):
        if key not in data:
            raise fail(key, "missing (required)")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected text, got {_kind(description)}")
    tasks = _string_list(data["tasks"], "tasks", fail)
    limit = data.get("limit")
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise fail("limit", f"expected a positive integer or null, got {limit!r}")
    defaults = _model_args(data.get("model_args", {}), "model_args", fail)

    if not isinstance(data["conditions"], list) or not data["conditions"]:
        raise fail("conditions", f"expected a non-empty list, got {_kind(data['conditions'])}")
    conditions: list[ConditionSpec] = []
    labels: dict[str, int] = {}
    for i, entry in enumerate(data["conditions"]):
        instances = _parse_condition(entry, f"conditions[{i}]", fail)
        label = instances[0].label
        if label in labels:
            raise fail(
                f"conditions[{i}]",
                f"label {label!r} is already used by conditions[{labels[label]}]; give one of them a distinct `label:`",
            )
        labels[label] = i
        conditions.extend(instances)

    if not isinstance(data["models"], list) or not data["models"]:
        raise fail("models", f"expected a non-empty list, got {_kind(data['models'])}")
    models = [_parse_model(entry, f"models[{i}]", defaults, path, fail) for i, entry in enumerate(data["models"])]
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail("models", f"duplicate model name(s) {', '.join(duplicates)}; names must be unique")
    return GridConfig(path, description, tuple(tasks), tuple(conditions), tuple(models), limit)


def _parse_condition(entry: Any, key: str, fail) -> list[ConditionSpec]:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise fail(key, f"expected a condition name or a mapping, got {_kind(entry)}")
    _check_keys(entry, CONDITION_KEYS, key, fail)
    name = entry.get("name")
    if not isinstance(name, str):
        raise fail(f"{key}.name", f"expected a condition name, got {_kind(name)}")
    label = entry.get("label", name)
    if not isinstance(label, str) or not SAFE_NAME.fullmatch(label):
        raise fail(f"{key}.label", f"expected letters, digits, '.', '_', '+', '-' (a folder name), got {label!r}")
    given = [k for k in ("seed", "seeds", "repeats") if k in entry]
    if len(given) > 1:
        raise fail(key, f"give only one of seed, seeds, repeats (got {', '.join(given)})")
    params = {k: entry[k] for k in CONDITION_PARAMS if k in entry and k != "seed"}
    if "k" in params and (not _is_int(params["k"]) or params["k"] < 1):
        raise fail(f"{key}.k", f"expected a positive integer, got {params['k']!r}")
    seeds: list[int] | None = None
    if "repeats" in entry:
        repeats = entry["repeats"]
        if not _is_int(repeats) or repeats < 1:
            raise fail(f"{key}.repeats", f"expected a positive integer, got {repeats!r}")
        seeds = list(range(repeats))
    elif "seeds" in entry:
        seeds = entry["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds):
            raise fail(f"{key}.seeds", f"expected a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise fail(f"{key}.seeds", f"seeds must be distinct, got {seeds!r}")
    elif "seed" in entry:
        if not _is_int(entry["seed"]):
            raise fail(f"{key}.seed", f"expected an integer, got {entry['seed']!r}")
        params["seed"] = entry["seed"]
    instances = (
        [ConditionSpec(label, name, params)]
        if seeds is None
        else [ConditionSpec(label, name, {**params, "seed": s}, repeated=True) for s in seeds]
    )
    for spec in instances:  # the engine checks the name and its parameters; report them against the key
        try:
            spec.make()
        except (ValueError, TypeError) as error:
            raise fail(key, str(error)) from None
    return instances


def _parse_model(entry: Any, key: str, defaults: dict[str, Any], path: Path, fail) -> ModelSpec:
    from interventions.families import FAMILIES

    if not isinstance(entry, dict):
        raise fail(key, f"expected a mapping with keys {', '.join(MODEL_KEYS)}, got {_kind(entry)}")
    _check_keys(entry, MODEL_KEYS, key, fail)
    name = entry.get("name")
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise fail(f"{key}.name", f"expected letters, digits, '.', '_', '+', '-' (a folder name), got {name!r}")
    family = entry.get("family")
    if family not in FAMILIES:
        raise fail(f"{key}.family", f"unknown family {family!r}; known families: {', '.join(sorted(FAMILIES))}")
    if ("pretrained" in entry) == ("tiny" in entry):
        raise fail(key, "give exactly one of `pretrained:` (hub id or path) and `tiny:` (a tiny random checkpoint)")
    pretrained = tiny_seed = None
    if "pretrained" in entry:
        pretrained = entry["pretrained"]
        if not isinstance(pretrained, str) or not pretrained:
            raise fail(f"{key}.pretrained", f"expected a hub id or a path, got {_kind(pretrained)}")
        if pretrained.startswith(("./", "../")):
            pretrained = str((path.parent / pretrained).resolve())
    else:
        tiny = entry["tiny"]
        if tiny is True:
            tiny = {}
        if not isinstance(tiny, dict):
            raise fail(f"{key}.tiny", f"expected `true` or a mapping like {{seed: 0}}, got {tiny!r}")
        _check_keys(tiny, TINY_KEYS, f"{key}.tiny", fail)
        tiny_seed = tiny.get("seed", 0)
        if not _is_int(tiny_seed):
            raise fail(f"{key}.tiny.seed", f"expected an integer, got {tiny_seed!r}")
    model_args = {**defaults, **_model_args(entry.get("model_args", {}), f"{key}.model_args", fail)}
    return ModelSpec(name, family, pretrained, tiny_seed, model_args)


def _model_args(value: Any, key: str, fail) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(key, f"expected a mapping of keyword arguments for model_wrappers.load_model, got {_kind(value)}")
    for name, arg in value.items():
        if not isinstance(name, str):
            raise fail(key, f"argument names must be text, got {name!r}")
        if name in ("family", "pretrained", "condition", *CONDITION_PARAMS):
            raise fail(f"{key}.{name}", "is set by the grid (from the model entry and from each condition)")
        if arg is not None and not isinstance(arg, (str, int, float, bool)):
            raise fail(f"{key}.{name}", f"expected a single value (text, number, true/false), got {_kind(arg)}")
    return dict(value)


def _string_list(value: Any, key: str, fail) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(key, f"expected a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise fail(key, f"names must be distinct, got {value!r}")
    return list(value)


def _check_keys(mapping: dict, allowed: Iterable[str], key: str, fail) -> None:
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        where = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise fail(where, f"unknown key; valid keys here: {', '.join(allowed)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


# ----------------------------------------------------------------------------------------------- files


def cell_dir(output: Path, cell: Cell) -> Path:
    return Path(output, cell.model.name, cell.condition.dirname, cell.task)


def read_done(directory: Path) -> dict[str, Any] | None:
    """The stored record of a finished cell folder, or None if the cell is not finished."""
    marker = directory / CELL_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))


def iter_done_cells(output: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished cell folder under ``output`` with its cell.json record, in a stable order."""
    found = []
    for marker in sorted(Path(output).rglob(CELL_FILE)):
        if any(part.endswith(PARTIAL_SUFFIX) for part in marker.parts):
            continue
        found.append((marker.parent, json.loads(marker.read_text(encoding="utf-8"))))
    return found


def write_atomic(path: Path, data: bytes) -> None:
    """Write next to ``path`` and move the file into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


def _materialise_tiny(output: Path, model: ModelSpec) -> str:
    """The tiny checkpoint's folder, written once (atomically) under OUTPUT/_checkpoints."""
    from narrowgate.tiny import save

    target = Path(output, CHECKPOINTS_DIR, f"{model.family}-seed{model.tiny_seed}")
    if not target.is_dir():
        tmp = target.with_name(target.name + PARTIAL_SUFFIX)
        shutil.rmtree(tmp, ignore_errors=True)
        save(model.family, tmp, seed=model.tiny_seed)
        os.replace(tmp, target)
    return str(target)


# ----------------------------------------------------------------------------------------------- running


@dataclass
class CellStatus:
    cell: str
    status: str  # "done", "skipped" (done before this run), "failed", "pending"
    seconds: float | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass
class GridReport:
    """What one run of the grid did: the statuses of the selected cells (in grid order); ``others`` are
    the config's cells outside this run's --only selection, as recorded before."""

    output: Path
    statuses: list[CellStatus]
    others: list[CellStatus] = field(default_factory=list)

    @property
    def failed(self) -> list[CellStatus]:
        return [s for s in self.statuses if s.status == "failed"]

    @property
    def evaluated(self) -> list[str]:
        return [s.cell for s in self.statuses if s.status == "done"]


def select_cells(cells: list[Cell], only: Iterable[str]) -> list[Cell]:
    """Cells whose id (``model/condition/task``) matches any shell-style pattern in ``only`` (all if none)."""
    patterns = list(only)
    if not patterns:
        return cells
    chosen = [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if not chosen:
        examples = ", ".join(c.id for c in cells[:3])
        raise ConfigError(f"--only {' '.join(patterns)} matches no cell; cell ids look like: {examples}")
    return chosen


def run_grid(
    config: GridConfig,
    output: str | os.PathLike,
    *,
    limit: int | None = None,
    only: Iterable[str] = (),
    on_cell_start: Callable[[Cell, Path], None] | None = None,
    verbosity: str = "WARNING",
    log: Callable[[str], None] | None = None,
) -> GridReport:
    """Evaluate every selected cell not already done under ``output``; never raises for a failing cell.

    ``limit`` overrides the config's. ``on_cell_start(cell, partial_dir)`` is called when a cell starts
    (its partial folder exists, its condition is set); an exception there fails the cell like any other,
    while KeyboardInterrupt/SystemExit stop the grid as a crash would — tests inject failures this way.
    """
    log = log or (lambda message: print(f"[grid] {message}", file=sys.stderr, flush=True))
    output = Path(output)
    limit = config.limit if limit is None else limit
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive integer, got {limit}")
    cells = select_cells(config.cells(), only)
    task_manager = _task_manager(config, verbosity)
    output.mkdir(parents=True, exist_ok=True)

    statuses = {c.id: CellStatus(c.id, "pending") for c in cells}
    for cell in cells:
        stored = read_done(cell_dir(output, cell))
        if stored is None:
            continue
        expected = cell.record(limit)
        if stored.get("spec") != expected:
            changes = "; ".join(_differences(stored.get("spec"), expected))
            raise ConfigError(
                f"{cell_dir(output, cell)} holds results of another setup ({changes}); "
                f"use a fresh --output folder or delete that cell's folder"
            )
        statuses[cell.id].status = "skipped"
    report = GridReport(output, [statuses[c.id] for c in cells], others=_other_cells(output, config, statuses))
    done_before = sum(s.status == "skipped" for s in report.statuses)
    if done_before:
        log(f"{done_before} of {len(cells)} cells already done in {output}; skipping them")
    _write_grid_file(output, config, limit, report)

    pending = [c for c in cells if statuses[c.id].status == "pending"]
    started = time.monotonic()
    for model, model_cells in _group_by_model(pending):
        lm = None
        try:
            pretrained = model.pretrained if model.tiny_seed is None else _materialise_tiny(output, model)
            log(f"loading {model.name} ({model.family}: {pretrained})")
            import model_wrappers

            lm = model_wrappers.load_model(model.family, pretrained, **model.model_args)
        except Exception as error:  # every cell of this model fails with the load error
            for cell in model_cells:
                _fail(statuses[cell.id], error, 0.0, log)
            _write_grid_file(output, config, limit, report)
            continue
        for cell in model_cells:
            position = sum(s.status in ("done", "failed") for s in report.statuses) + 1
            log(f"cell {position}/{len(pending)}: {cell.id}{_eta(report, started, len(pending))}")
            t0 = time.monotonic()
            try:
                _run_cell(lm, cell, output, pretrained, limit, task_manager, verbosity, on_cell_start)
                statuses[cell.id].status = "done"
                statuses[cell.id].seconds = round(time.monotonic() - t0, 3)
                log(f"done {cell.id} in {statuses[cell.id].seconds:.1f} s")
            except Exception as error:
                _fail(statuses[cell.id], error, time.monotonic() - t0, log)
            _write_grid_file(output, config, limit, report)
        del lm
        _free_memory()
    if report.failed:
        failed = ", ".join(s.cell for s in report.failed)
        log(f"{len(report.failed)} cell(s) failed: {failed} (details in {output / GRID_FILE})")
    return report


def _run_cell(
    lm, cell: Cell, output: Path, pretrained: str, limit, task_manager, verbosity: str, on_cell_start
) -> None:
    """Evaluate one cell into a partial folder, then move it into place and write its marker last."""
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    final = cell_dir(output, cell)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    for stale in (partial, final):  # an unfinished cell is redone from scratch
        shutil.rmtree(stale, ignore_errors=True)
    partial.mkdir(parents=True)
    condition = cell.condition.make()
    lm.set_condition(condition)
    if on_cell_start is not None:
        on_cell_start(cell, partial)

    # What `--model <family>_<condition> --model_args ...` needs to replay the cell: the model's own
    # arguments and the condition's canonical options (layer lists joined by "+", not split on commas).
    options = {k: v for k, v in condition.to_dict().items() if k != "name" and v is not None}
    arguments = {"pretrained": pretrained, **cell.model.model_args, "condition": condition.name, **options}
    model_args = ",".join(f"{k}={v}" for k, v in arguments.items())
    tracker = EvaluationTracker(output_path=str(partial))
    datetime_str = get_datetime_str()
    # Caption tasks write their submission files under cli_args.output_path; the rest mirrors the CLI.
    cli_args = argparse.Namespace(
        output_path=str(partial), process_with_media=False, model=cell.model.name, tasks=cell.task, limit=limit
    )
    results = evaluator.simple_evaluate(
        model=lm,
        model_args=model_args,
        tasks=[cell.task],
        task_manager=task_manager,
        limit=limit,
        log_samples=True,
        evaluation_tracker=tracker,
        verbosity=verbosity,
        datetime_str=datetime_str,
        cli_args=cli_args,
    )
    if results is None or cell.task not in results.get("results", {}):
        raise RuntimeError(f"lmms-eval returned no results for task {cell.task!r}")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=datetime_str)
    tracker.save_results_samples(task_name=cell.task, samples=samples[cell.task])
    # lmms-eval's savers log and swallow write errors; a cell is done only if both files are there.
    results_file = _one(partial.glob("*/*_results.json"), partial, "results json")
    samples_file = _one(partial.glob(f"*/*_samples_{cell.task}.jsonl"), partial, "samples jsonl")
    os.replace(partial, final)
    write_json_atomic(
        final / CELL_FILE,
        {
            "spec": cell.record(limit),
            "order": list(cell.order),
            "results": str(results_file.relative_to(partial)),
            "samples": str(samples_file.relative_to(partial)),
            "pretrained_path": pretrained,
        },
    )


def _differences(stored: Any, asked: Any, key: str = "") -> list[str]:
    """Where two cell records differ, as ``key: stored X, now Y`` lines."""
    if isinstance(stored, dict) and isinstance(asked, dict):
        return [
            line
            for k in dict.fromkeys([*stored, *asked])
            for line in _differences(stored.get(k), asked.get(k), f"{key}.{k}" if key else k)
        ]
    return [] if stored == asked else [f"{key}: stored {stored!r}, now {asked!r}"]


def _one(paths: Iterable[Path], folder: Path, what: str) -> Path:
    found = list(paths)
    if len(found) != 1:
        raise RuntimeError(f"expected one {what} in {folder}, found {len(found)}: {[str(p) for p in found]}")
    return found[0]


def _task_manager(config: GridConfig, verbosity: str):
    """lmms-eval's index of narrowgate's tasks only; fails before any model loads if a task is unknown."""
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(verbosity, include_path=_tasks_dir(), include_defaults=False)
    unknown = [t for t in config.tasks if t not in manager.all_subtasks]
    if unknown:
        raise ConfigError(
            f"{config.path}: tasks: unknown task(s) {', '.join(unknown)}; narrowgate tasks: "
            f"{', '.join(manager.all_subtasks)}"
        )
    return manager


def _tasks_dir() -> str:
    import narrowgate_tasks

    return str(Path(narrowgate_tasks.__file__).parent)


def _group_by_model(cells: list[Cell]) -> list[tuple[ModelSpec, list[Cell]]]:
    groups: dict[str, tuple[ModelSpec, list[Cell]]] = {}
    for cell in cells:
        groups.setdefault(cell.model.name, (cell.model, []))[1].append(cell)
    return list(groups.values())


def _fail(status: CellStatus, error: BaseException, seconds: float, log) -> None:
    status.status = "failed"
    status.seconds = round(seconds, 3)
    status.error = f"{type(error).__name__}: {error}"
    status.traceback = traceback.format_exc()
    log(f"FAILED {status.cell}: {status.error}")


def _eta(report: GridReport, started: float, total: int) -> str:
    finished = sum(s.status in ("done", "failed") for s in report.statuses)
    if not finished:
        return ""
    remaining = (time.monotonic() - started) / finished * (total - finished)
    return f" (about {remaining / 60:.1f} min left)" if remaining >= 60 else f" (about {remaining:.0f} s left)"


def _write_grid_file(output: Path, config: GridConfig, limit: int | None, report: GridReport) -> None:
    order = {cell.id: i for i, cell in enumerate(config.cells())}
    write_json_atomic(
        output / GRID_FILE,
        {
            "config": str(config.path),
            "description": config.description,
            "limit": limit,
            "tasks": list(config.tasks),
            "models": [m.record() for m in config.models],
            "conditions": [c.record() for c in config.conditions],
            "cells": [vars(s) for s in sorted([*report.statuses, *report.others], key=lambda s: order[s.cell])],
        },
    )


def _other_cells(output: Path, config: GridConfig, selected: dict[str, CellStatus]) -> list[CellStatus]:
    """Statuses of the cells this run does not touch, as an earlier run recorded them (or as found on
    disk), so that grid.json keeps describing the whole grid across ``--only`` runs."""
    grid_file = output / GRID_FILE
    previous = {}
    if grid_file.is_file():
        previous = {c["cell"]: c for c in json.loads(grid_file.read_text(encoding="utf-8")).get("cells", [])}
    others = []
    for cell in config.cells():
        if cell.id in selected:
            continue
        if cell.id in previous:
            others.append(
                CellStatus(**{f: previous[cell.id].get(f) for f in ("cell", "status", "seconds", "error", "traceback")})
            )
        else:
            others.append(CellStatus(cell.id, "skipped" if read_done(cell_dir(output, cell)) else "pending"))
    return others


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# ----------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="grid config YAML (see configs/smoke.yaml, configs/paper_table1.yaml)")
    parser.add_argument("--output", required=True, help="output folder; rerunning into it resumes the grid")
    parser.add_argument("--limit", type=int, default=None, help="documents per task (overrides the config's limit)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only cells whose id MODEL/CONDITION/TASK matches this shell pattern (repeatable), "
        "e.g. 'Chameleon-7B/*' or '*/gate_ablated/*'",
    )
    parser.add_argument("--verbosity", default="WARNING", help="lmms-eval log level (default WARNING)")


def set_log_level(verbosity: str) -> None:
    """Show lmms-eval's (loguru) messages from ``verbosity`` up only, as its own CLI does."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=verbosity.upper())


def run(args: argparse.Namespace) -> int:
    set_log_level(args.verbosity)
    try:
        config = load_config(args.config)
        report = run_grid(config, args.output, limit=args.limit, only=args.only, verbosity=args.verbosity)
    except ConfigError as error:
        print(f"narrowgate grid: {error}", file=sys.stderr)
        return 2
    done = sum(s.status in ("done", "skipped") for s in report.statuses)
    print(f"{done}/{len(report.statuses)} cells done in {report.output}", file=sys.stderr)
    return 1 if report.failed else 0
