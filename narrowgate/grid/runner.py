"""Running the grid: each model loaded once, its cells evaluated through lmms-eval, failures recorded."""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from narrowgate.core.checkpoints import name_corrupt_file
from narrowgate.core.console import output_to, verbose_requested
from narrowgate.core.evaluation import evaluate, plain_error, task_manager
from narrowgate.core.files import write_json_atomic
from narrowgate.grid.cells import (
    CELL_FILE,
    CHECKPOINTS_DIR,
    GRID_FILE,
    LOG_FILE,
    PARTIAL_SUFFIX,
    CellStatus,
    GridReport,
    cell_dir,
    differences,
    other_cells,
    read_done,
    write_grid_file,
)
from narrowgate.grid.config import Cell, ConfigError, GridConfig, ModelSpec, check_checkpoints
from narrowgate.grid.parallel import Ranks
from narrowgate_tasks.java import check_java
from narrowgate_tasks.sources import check_data


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


def _tiny_checkpoint(output: Path, model: ModelSpec, ranks: Ranks) -> str:
    """The tiny checkpoint's folder: rank 0 writes it, the other ranks wait for it (or for its error)."""
    path, error = None, None
    if ranks.is_main:
        try:
            path = _materialise_tiny(output, model)
        except Exception as failure:
            error = failure
    path = ranks.share(path if error is None else error)
    if isinstance(path, Exception):
        raise path
    return path


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


def run_grid(
    config: GridConfig,
    output: str | os.PathLike,
    *,
    limit: int | None = None,
    only: Iterable[str] = (),
    on_cell_start: Callable[[Cell, Path], None] | None = None,
    verbosity: str = "WARNING",
    log: Callable[[str], None] | None = None,
    sequential: bool = False,
    max_rows: int | None = None,
    verbose: bool = False,
) -> GridReport:
    """Evaluate every selected cell not already done under ``output``; never raises for a failing cell
    in a single process (under data parallel a failing cell stops every rank: rerun to resume).

    ``limit`` overrides the config's. ``on_cell_start(cell, partial_dir)`` is called when a cell starts
    (its partial folder exists, its condition is set); an exception there fails the cell like any other,
    while KeyboardInterrupt/SystemExit stop the grid as a crash would — tests inject failures this way.

    By default a model's pending conditions generate together: the first cell of each task computes every
    condition's answers in one pass (``NarrowgateModel.conditions_together``; ``max_rows`` caps the rows of
    one forward) and each cell is still its own lmms-eval run, answered from them with the same outputs.
    ``sequential`` generates each cell on its own.

    The log gets one line per cell (and per model load); what the libraries print while loading and
    evaluating (progress bars, warnings, Java) goes to ``OUTPUT/grid.log``, unless ``verbose`` (or
    ``LOGLEVEL=DEBUG``), which also shows the tracebacks of failures.
    """
    verbose = verbose_requested(verbose)
    ranks = Ranks()
    log = log or (lambda message: print(f"[grid] {message}", file=sys.stderr, flush=True))
    if not ranks.is_main:
        log = _quiet
    output = Path(output)
    limit = config.limit if limit is None else limit
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive integer, got {limit}")
    cells = select_cells(config.cells(), only)
    manager = _task_manager(config, verbosity)
    check_java({cell.task for cell in cells})  # caption metrics need Java: refuse before any model loads

    decision = _done_cells(output, cells, limit) if ranks.is_main else None
    if isinstance(decision := ranks.share(decision), str):
        raise ConfigError(decision)
    waiting = [cell for cell in cells if cell.id not in decision]  # before any model loads:
    check_checkpoints(config.path, list({cell.model.name: cell.model for cell in waiting}.values()))
    check_data(dict.fromkeys(cell.task for cell in waiting))
    statuses = {c.id: CellStatus(c.id, "skipped" if c.id in decision else "pending") for c in cells}
    others = other_cells(output, config, statuses) if ranks.is_main else []
    report = GridReport(output, [statuses[c.id] for c in cells], others=others)
    if decision:
        log(f"{len(decision)} of {len(cells)} cells already done in {output}; skipping them")

    def record() -> None:
        if ranks.is_main:
            write_grid_file(output, config, limit, report)

    record()

    pending = [c for c in cells if statuses[c.id].status == "pending"]
    details = None if verbose else output / (LOG_FILE if ranks.is_main else f"grid.rank{ranks.rank}.log")
    clock = Clock(pending, sequential)
    for model, model_cells in _group_by_model(pending):
        lm, error, pretrained = None, None, model.pretrained
        try:
            pretrained = model.pretrained if model.tiny_seed is None else _tiny_checkpoint(output, model, ranks)
            log(f"loading {model.name} ({model.family}: {pretrained})")
            import model_wrappers

            with output_to(details), clock.loading(model.name):
                lm = model_wrappers.load_model(model.family, pretrained, **model.model_args)
        except Exception as load_error:  # every cell of this model fails with the load error
            error = name_corrupt_file(load_error, pretrained)
        if ranks.first_error(None if error is None else f"{type(error).__name__}: {error}") is not None:
            error = error or RuntimeError("the model failed to load on another rank")
            for cell in model_cells:
                _fail(statuses[cell.id], error, 0.0, log=None)
                clock.done(cell, None)
            log(f"FAILED loading {model.name}: {statuses[model_cells[0].id].error} ({len(model_cells)} cells not run)")
            _show_traceback(statuses[model_cells[0].id], verbose, log)
            record()
            continue
        conditions = list(dict.fromkeys(cell.condition.make() for cell in model_cells))
        with nullcontext() if sequential else lm.conditions_together(conditions, max_rows):
            for cell in model_cells:
                t0 = time.monotonic()
                try:
                    with output_to(details):
                        _run_cell(lm, cell, output, pretrained, limit, manager, verbosity, on_cell_start, ranks)
                    statuses[cell.id].status = "done"
                    statuses[cell.id].seconds = round(time.monotonic() - t0, 3)
                    clock.done(cell, statuses[cell.id].seconds)
                    log(f"{clock.position}/{len(pending)} {cell.id}: done in {statuses[cell.id].seconds:.1f} s{clock.left()}")
                except Exception as error:
                    clock.done(cell, None)
                    _fail(statuses[cell.id], error, time.monotonic() - t0, log)
                    _show_traceback(statuses[cell.id], verbose, log)
                    if ranks.world_size > 1:  # the other ranks wait in the evaluator's collectives: stop them all
                        record()
                        raise
                record()
        del lm
        _free_memory()
    if report.failed:
        failed = ", ".join(s.cell for s in report.failed)
        where = f"{output / GRID_FILE}" + ("" if verbose else f", {output / LOG_FILE}")
        log(f"{len(report.failed)} cell(s) failed: {failed} (details in {where})")
    return report


def _done_cells(output: Path, cells: list[Cell], limit: int | None) -> list[str] | str:
    """The ids of the cells already done under ``output``, or why the folder cannot be resumed."""
    done = []
    for cell in cells:
        stored = read_done(cell_dir(output, cell))
        if stored is None:
            continue
        expected = cell.record(limit)
        if stored.get("spec") != expected:
            changes = "; ".join(differences(stored.get("spec"), expected))
            return (
                f"{cell_dir(output, cell)} holds results of another setup ({changes}); "
                f"use a fresh --output folder or delete that cell's folder"
            )
        done.append(cell.id)
    return done


def _quiet(message: str) -> None:
    """The log of ranks other than 0: rank 0 reports for the grid."""


def lmms_eval_model(cell: Cell, pretrained: str) -> tuple[str, str]:
    """The ``--model`` and ``--model_args`` that replay this cell with the ``lmms_eval`` command: the model's
    own arguments and the condition's canonical options (layer lists joined by "+", not split on commas)."""
    condition = cell.condition.make()
    options = {k: v for k, v in condition.to_dict().items() if k != "name" and v is not None}
    args = {"pretrained": pretrained, **cell.model.model_args, **options}
    return f"{cell.model.family}_{condition.name}", ",".join(f"{k}={v}" for k, v in args.items())


def _run_cell(
    lm, cell: Cell, output: Path, pretrained: str, limit, manager, verbosity: str, on_cell_start, ranks
) -> None:
    """Evaluate one cell into a partial folder, then move it into place and write its marker last (rank 0;
    the other ranks evaluate their share of the documents)."""
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    final = cell_dir(output, cell)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    if ranks.is_main:
        for stale in (partial, final):  # an unfinished cell is redone from scratch
            shutil.rmtree(stale, ignore_errors=True)
        partial.mkdir(parents=True)
    lm.set_condition(cell.condition.make())
    if on_cell_start is not None and ranks.is_main:
        on_cell_start(cell, partial)

    model_name, model_args = lmms_eval_model(cell, pretrained)
    manager.model_name = model_name  # the tasks' per-model prompt variants (lmms_eval_specific_kwargs), as the CLI
    tracker = EvaluationTracker(output_path=str(partial))
    datetime_str = get_datetime_str()
    # Caption tasks write their submission files under cli_args.output_path; the rest mirrors the CLI.
    cli_args = argparse.Namespace(
        output_path=str(partial), process_with_media=False, model=model_name, tasks=cell.task, limit=limit
    )
    results = evaluate(
        lm,
        cell.task,
        manager,
        main=ranks.is_main,
        model_args=model_args,
        limit=limit,
        log_samples=True,
        evaluation_tracker=tracker,
        verbosity=verbosity,
        datetime_str=datetime_str,
        cli_args=cli_args,
        # as lmms-eval's own CLI chooses: the process group of a torchrun launch, or accelerate's
        distributed_executor_backend="torchrun" if ranks.world_size > 1 else "accelerate",
    )
    if results is None:
        return  # rank 0 gathered this rank's documents and writes the cell
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
            "lmms_eval": {"model": model_name, "model_args": model_args},  # the same cell from the command line
        },
    )


def _one(paths: Iterable[Path], folder: Path, what: str) -> Path:
    found = list(paths)
    if len(found) != 1:
        raise RuntimeError(f"expected one {what} in {folder}, found {len(found)}: {[str(p) for p in found]}")
    return found[0]


def _task_manager(config: GridConfig, verbosity: str):
    """lmms-eval's index of narrowgate's tasks only; fails before any model loads if a task is unknown."""
    manager = task_manager(verbosity)
    unknown = [t for t in config.tasks if t not in manager.all_subtasks]
    if unknown:
        raise ConfigError(
            f"{config.path}: tasks: unknown task(s) {', '.join(unknown)}; narrowgate tasks: "
            f"{', '.join(manager.all_subtasks)}"
        )
    return manager


def _group_by_model(cells: list[Cell]) -> list[tuple[ModelSpec, list[Cell]]]:
    groups: dict[str, tuple[ModelSpec, list[Cell]]] = {}
    for cell in cells:
        groups.setdefault(cell.model.name, (cell.model, []))[1].append(cell)
    return list(groups.values())


def _fail(status: CellStatus, error: BaseException, seconds: float, log) -> None:
    status.status = "failed"
    status.seconds = round(seconds, 3)
    shown = plain_error(error)
    status.error = f"{type(shown).__name__}: {shown}"
    status.traceback = "".join(traceback.format_exception(error))
    if log is not None:
        log(f"FAILED {status.cell}: {status.error}")


def _show_traceback(status: CellStatus, verbose: bool, log) -> None:
    if verbose:
        log(status.traceback.rstrip())


class Clock:
    """The grid's time estimate, from measured times only: each cell left is expected to take the mean
    time of the finished cells of its kind (its task, and whether it generates every condition's answers
    for its model and task, as the first one does when they generate together; else the mean of that
    role over every task), plus the mean load time for each model still to load."""

    def __init__(self, pending: list[Cell], sequential: bool) -> None:
        firsts = {(c.model.name, c.task): c.id for c in reversed(pending)}
        self.kind = {c.id: (c.task, sequential or firsts[c.model.name, c.task] == c.id) for c in pending}
        self.left_cells = {c.id: c.model.name for c in pending}
        self.measured: dict[tuple[str, bool], list[float]] = {}
        self.loads: list[float] = []
        self.loaded: str | None = None
        self.position = 0

    @contextmanager
    def loading(self, model: str) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        self.loads.append(time.monotonic() - t0)
        self.loaded = model

    def done(self, cell: Cell, seconds: float | None) -> None:
        """``cell`` finished (``seconds``: its time; None when it failed, which says nothing of the rest)."""
        self.position += 1
        self.left_cells.pop(cell.id)
        if seconds is not None:
            self.measured.setdefault(self.kind[cell.id], []).append(seconds)

    def left(self) -> str:
        """`` (about N min left)``, or nothing when nothing is left or nothing was measured yet."""
        if not self.left_cells or not self.measured:
            return ""
        means = {kind: statistics.fmean(times) for kind, times in self.measured.items()}
        by_role = {
            role: statistics.fmean(ts)
            for role in (True, False)
            if (ts := [t for (_, first), times in self.measured.items() if first == role for t in times])
        }
        fallback = statistics.fmean(means.values())
        seconds = sum(
            means.get(kind, by_role.get(kind[1], fallback)) for kind in map(self.kind.get, self.left_cells)
        )
        seconds += statistics.fmean(self.loads) * len(set(self.left_cells.values()) - {self.loaded}) if self.loads else 0
        return f" (about {seconds / 60:.1f} min left)" if seconds >= 60 else f" (about {seconds:.0f} s left)"


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
