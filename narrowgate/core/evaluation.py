"""The one in-process lmms-eval evaluation narrowgate makes (a grid cell, the toy's smoke accuracy), and
what every way into lmms-eval needs: narrowgate's task folder, the filelock workaround and errors shown
as their cause. The ``lmms_eval`` command (``narrowgate.launcher``) uses the same pieces around
lmms-eval's own CLI."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def apply_filelock_workaround() -> None:
    """Make ``import filelock._api`` work with filelock >= 4 (its content moved to ``filelock._core``)."""
    if importlib.util.find_spec("filelock._api") is None and importlib.util.find_spec("filelock._core") is not None:
        sys.modules["filelock._api"] = importlib.import_module("filelock._core")


def tasks_dir() -> str:
    """The folder of narrowgate's task YAMLs (the installed ``narrowgate_tasks`` package)."""
    import narrowgate_tasks

    return str(Path(narrowgate_tasks.__file__).parent)


def plain_error(error: BaseException) -> BaseException:
    """The error to show: the cause of a tenacity ``RetryError`` (lmms-eval retries dataset loading and
    would otherwise report ``RetryError[<Future ... raised FileNotFoundError>]``), else ``error``."""
    from tenacity import RetryError

    while isinstance(error, RetryError):
        cause = error.__cause__ or error.last_attempt.exception()
        if cause is None:
            break
        error = cause
    return error


def is_refusal(error: BaseException) -> bool:
    """An error whose message says it all (checks of inputs, files, data, Java, supported models raise
    ValueError or OSError subclasses): shown as one line. Other exceptions, likely bugs, keep their
    traceback."""
    return isinstance(error, (ValueError, OSError))


def task_manager(verbosity: str = "WARNING", model_name: str | None = None):
    """lmms-eval's index of narrowgate's tasks only (lmms-eval's own are not indexed: faster, and a
    narrowgate run cannot pick up a task of the same name from elsewhere). ``model_name`` picks the
    tasks' per-model prompt variants (``lmms_eval_specific_kwargs``), as lmms-eval's CLI does."""
    apply_filelock_workaround()
    from lmms_eval.tasks import TaskManager

    return TaskManager(verbosity, include_path=tasks_dir(), include_defaults=False, model_name=model_name)


def evaluate(lm, task: str, manager, *, main: bool = True, **options: Any) -> dict[str, Any] | None:
    """``lmms_eval.evaluator.simple_evaluate`` of one ``task`` on the loaded model ``lm`` (``options``:
    its other keyword arguments). Returns lmms-eval's results (with ``samples`` when logged) on the main
    process, None on the others (the main one gathers their documents). A RuntimeError says when no
    results came back; lmms-eval's retry wrapper is replaced by the error it wraps."""
    apply_filelock_workaround()
    from lmms_eval import evaluator

    try:
        results = evaluator.simple_evaluate(model=lm, tasks=[task], task_manager=manager, **options)
    except Exception as error:
        shown = plain_error(error)
        if shown is error:
            raise
        raise shown from None
    if not main:
        return None
    if results is None or task not in results.get("results", {}):
        raise RuntimeError(f"lmms-eval returned no results for task {task!r}")
    return results
