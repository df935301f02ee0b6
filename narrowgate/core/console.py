"""What a person sees: one line per step on the terminal, everything else in a log file.

A grid cell runs lmms-eval, transformers and pycocoevalcap, each with its own progress bars, warnings
and Java output: about 200 lines for the demo's 36 cells before its table. ``output_to`` sends all of it
(Python's streams and the file descriptors, so child processes too) to a log file and hands back a
stream to the terminal for the caller's own lines. ``--verbose`` or ``LOGLEVEL=DEBUG`` keeps it all on
the terminal, tracebacks included.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO


def verbose_requested(flag: bool = False) -> bool:
    """``--verbose`` given, or ``LOGLEVEL=DEBUG`` in the environment."""
    return flag or os.environ.get("LOGLEVEL", "").upper() == "DEBUG"


@contextmanager
def output_to(path: Path | None) -> Iterator[TextIO]:
    """Inside, stdout and stderr are appended to ``path`` (None: left alone); yields the terminal's stream."""
    if path is None:
        yield sys.stderr
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fds = (sys.stdout.fileno(), sys.stderr.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):  # streams that are not files (a test's capture)
        fds = ()
    with open(path, "a", encoding="utf-8", buffering=1) as log:
        saved = [os.dup(fd) for fd in fds]
        terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1) if saved else sys.stderr
        try:
            for fd in fds:
                os.dup2(log.fileno(), fd)
            with redirect_stdout(log), redirect_stderr(log):
                yield terminal
        finally:
            log.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            if terminal is not sys.stderr:
                terminal.close()
