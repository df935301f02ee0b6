"""Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop or time limit).

Python turns only SIGINT into an exception; SIGTERM would end the process at once, skipping every
``finally`` and leaving child processes (pycocoevalcap's Java scorers) running. Under ``stop_on_signals``
both raise ``Interrupted`` in the main thread, so the code in flight unwinds (a grid cell stays
unfinished and is redone on resume; finished cells were written atomically before), the child
processes are stopped, and the command prints one line saying how to resume instead of a traceback.
A second signal acts as it would without narrowgate.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (``signal``: which one)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)


def signal_of(stop: KeyboardInterrupt) -> signal.Signals:
    """The signal behind ``stop`` (a plain KeyboardInterrupt is SIGINT's)."""
    return stop.signal if isinstance(stop, Interrupted) else signal.SIGINT


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` while inside; child processes are stopped when one does.
    Outside the main thread (where Python delivers signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def interrupt(signum: int, frame) -> None:
        for s, handler in previous.items():  # a second signal is not caught
            signal.signal(s, handler)
        raise Interrupted(signum)

    for s in SIGNALS:
        signal.signal(s, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        stop_child_processes()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_child_processes(grace: float = 3.0) -> None:
    """Terminate every process this one started (and theirs), killing those still alive after ``grace``
    seconds: a SIGTERM sent to this process alone reaches none of them."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def run_command(prog: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``run(args)``'s exit status; on SIGINT/SIGTERM one line saying how to resume and 128 + the signal's
    number (the shell's convention)."""
    with stop_on_signals():
        try:
            return int(run(args) or 0)
        except KeyboardInterrupt as stop:
            received = signal_of(stop)
            output = getattr(args, "output", None)
            kept = f"finished work is kept in {output}" if output else "finished work is kept"
            print(f"{prog}: interrupted by {received.name}; {kept}: rerun the same command to resume", file=sys.stderr)
            return 128 + received.value
