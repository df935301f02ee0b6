"""Java for the ``*_ptb`` caption metrics: checked before any model loads, or switched off.

The ``*_ptb`` metrics (``cider_ptb``, ``bleu4_ptb``, ``meteor_ptb``, ``rouge_l_ptb``) run pycocoevalcap's
PTB tokenizer and METEOR, both Java programs, once per task at aggregation time: after every caption
has been generated. Without Java such a run would fail only at the end, so the ``lmms_eval`` launcher
and the grid call ``check_java`` with the requested task names first, and the caption tasks check again
when their documents are built (before generation; lmms-eval's own command loads the model first).

``NARROWGATE_SKIP_PTB=1`` skips the ``*_ptb`` metrics: caption tasks then report ``cider_paper`` (the
authors' score, pure Python) and no ``*_ptb`` value at all, never a made-up one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from narrowgate_tasks import catalog
from narrowgate_tasks.metrics import PTB_METRICS

SKIP_ENV = "NARROWGATE_SKIP_PTB"


class JavaMissingError(FileNotFoundError):
    """Java is needed by the requested tasks' ``*_ptb`` metrics but is not on the PATH."""


def ptb_skipped() -> bool:
    """Whether ``NARROWGATE_SKIP_PTB`` switches the ``*_ptb`` metrics off (any value but empty or 0)."""
    return os.environ.get(SKIP_ENV, "").strip() not in ("", "0")


def require_java(needed_by: str) -> None:
    """Refuse, naming the fix, when the ``*_ptb`` metrics are not skipped and ``java`` is not on the PATH."""
    if ptb_skipped() or shutil.which("java") is not None:
        return
    raise JavaMissingError(
        f"Java is not on the PATH, but {needed_by} reports the *_ptb caption metrics "
        f"({', '.join(PTB_METRICS)}), which run pycocoevalcap's PTB tokenizer and METEOR in Java after all "
        f"captions are generated. Install Java (e.g. `apt-get install default-jre-headless`), or set "
        f"{SKIP_ENV}=1 to skip the *_ptb metrics (cider_paper, the paper's score, is still reported)."
    )


def check_java(requested: Iterable[str]) -> None:
    """``require_java`` if any of ``requested`` (task or group names, shell patterns) has ``*_ptb`` metrics."""
    tasks = ptb_tasks(requested)
    if tasks:
        require_java(f"task(s) {', '.join(tasks)}")


def ptb_tasks(requested: Iterable[str]) -> list[str]:
    """narrowgate's tasks among ``requested`` (groups expanded, shell patterns matched) that report
    ``*_ptb`` metrics; names that are not narrowgate's are ignored."""
    tasks, _ = catalog.index()
    return [
        task
        for task in catalog.expand(requested)
        if {entry.get("metric") for entry in tasks[task].get("metric_list", [])} & set(PTB_METRICS)
    ]
