"""The real source of each narrowgate task's documents, written into lmms-eval's results json.

The task YAMLs name a one-row placeholder as ``dataset_path`` (the documents come from ``process_docs``,
see ``sources``), so lmms-eval's results json would record ``dataset_path: json``. Each ``process_docs``
hook is wrapped by ``documents``, which remembers what was loaded: for every source its hub id, split,
data files, requested revision, where the copy was read from, its ``datasets`` fingerprint and row
count; for the task, the number of documents and a digest of their ids in order. When lmms-eval's
``EvaluationTracker`` writes the results json, the task's ``configs`` entry gets the real
``dataset_path`` and the full record under ``narrowgate_source``; other tasks are written unchanged.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import datasets

SOURCE_KEY = "narrowgate_source"

# task name -> its record (filled when the task's documents are built, in this process)
RECORDS: dict[str, dict[str, Any]] = {}


def ids_digest(ids: list) -> str:
    """sha1 of the ids joined by commas, in document order (the paper's subsets are ordered)."""
    return hashlib.sha1(",".join(str(i) for i in ids).encode()).hexdigest()


def documents(task: str, id_column: str) -> Callable:
    """Decorate the ``process_docs`` hook of ``task``: ``fn(placeholder)`` must return the documents and
    load them through ``sources.load_source`` / ``load_packaged`` (which describe what they loaded)."""
    from narrowgate_tasks import sources

    def wrap(fn: Callable[[datasets.Dataset], datasets.Dataset]):
        @functools.wraps(fn)
        def process_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
            sources.LOADED.clear()
            docs = fn(placeholder)
            loaded = {(s["hub_id"], s["split"]) for s in sources.LOADED if "hub_id" in s}
            declared = {(s.hub_id, s.split) for s in sources.TASK_SOURCES.get(task, ())}
            if loaded != declared:  # check_data, before any model loads, checks what TASK_SOURCES declares
                raise RuntimeError(f"{task} loaded {sorted(loaded)} but sources.TASK_SOURCES declares {sorted(declared)}")
            ids = docs[id_column]
            primary = sources.LOADED[0]
            RECORDS[task] = {
                "dataset_path": primary.get("hub_id", primary.get("file")),
                "sources": list(sources.LOADED),
                "documents": len(docs),
                "id_column": id_column,
                "ids_sha1": ids_digest(ids),
                "first_ids": [int(i) if isinstance(i, int) else str(i) for i in ids[:5]],
            }
            record_in_results_json()
            return docs

        return process_docs

    return wrap


def annotate(results: dict) -> dict:
    """Write the recorded sources into ``results["configs"]`` (in place) for the tasks that have one."""
    for task, config in results.get("configs", {}).items():
        if task in RECORDS:
            config["dataset_path"] = RECORDS[task]["dataset_path"]
            config.pop("dataset_kwargs", None)  # the placeholder's
            config[SOURCE_KEY] = RECORDS[task]
    return results


def record_in_results_json() -> None:
    """Make lmms-eval's results writer call ``annotate`` first; idempotent."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    save = EvaluationTracker.save_results_aggregated
    if getattr(save, "_narrowgate_sources", False):
        return

    @functools.wraps(save)
    def save_results_aggregated(self, results: dict, samples: dict, datetime_str: str) -> None:
        return save(self, annotate(results), samples, datetime_str)

    save_results_aggregated._narrowgate_sources = True
    EvaluationTracker.save_results_aggregated = save_results_aggregated
