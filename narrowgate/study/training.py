"""Training the study's runs: each one a ``narrowgate train-toy`` process, ``jobs`` of them at a time.

A subprocess per run keeps runs independent (each uses its recipe's ``threads``) and reuses train-toy's
own resume: its checkpoint folder is written atomically, so a run whose checkpoint exists is done and
skipped, and an interrupted run continues from the train-state file train-toy keeps next to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import narrowgate
from narrowgate.core.files import write_json_atomic
from narrowgate.study.plan import Run, StudyError
from narrowgate.toy import RECIPE_FILE, ToyRecipe

LOG_FILE = "train.log"


def trained(run: Run, output: Path) -> bool:
    """Whether the run's checkpoint exists; an error when it was trained from another recipe (the config
    changed under a finished run: use a new output folder or delete the run's folder). A recipe written
    before ``ToyRecipe`` gained a field is the same recipe when the run's value of that field is its default."""
    written = run.checkpoint(output) / RECIPE_FILE
    if not written.is_file():
        return False
    try:  # a field the recipe gained since takes its default, which keeps the toy bit for bit
        same = ToyRecipe(**json.loads(written.read_text())) == run.recipe
    except (TypeError, ValueError):
        same = False
    if not same:
        raise StudyError(
            f"{run.id}: {written} holds another recipe than the config's; use a new --output or delete "
            f"{run.folder(output)} to retrain it"
        )
    return True


def command(run: Run, output: Path) -> list[str]:
    """The train-toy command line of a run (its recipe file holds every field)."""
    folder = run.folder(output)
    return [
        sys.executable, "-m", "narrowgate.cli", "train-toy",
        "--out", str(run.checkpoint(output)), "--recipe", str(folder / "recipe.json"), "--skip-measure",
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    """This environment, with the folder this narrowgate is imported from first on the path, so that
    train-toy runs the same code as the study (a source checkout next to an installed copy)."""
    root = str(Path(narrowgate.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


def train_runs(runs: Sequence[Run], output: Path, jobs: int, log: Callable[[str], None]) -> None:
    """Train every run whose checkpoint is missing, ``jobs`` at a time, with progress lines; a StudyError
    naming the failed runs and their logs when any train-toy exits with an error (the others finish)."""
    pending = [run for run in runs if not trained(run, output)]
    if len(pending) < len(runs):
        log(f"{len(runs) - len(pending)} of {len(runs)} runs already trained; skipping them")
    if not pending:
        return
    started, failed = time.monotonic(), []

    def train(run: Run) -> int:
        folder = run.folder(output)
        write_json_atomic(folder / "recipe.json", dataclasses.asdict(run.recipe))
        with open(folder / LOG_FILE, "a") as out:
            return subprocess.run(command(run, output), check=False, stdout=out, stderr=subprocess.STDOUT, env=child_env()).returncode

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(train, run): run for run in pending}
        log(f"training {len(pending)} runs, {min(jobs, len(pending))} at a time (logs: RUN/{LOG_FILE})")
        for done, future in enumerate(as_completed(futures), 1):
            run = futures[future]
            elapsed = time.monotonic() - started
            eta = elapsed / done * (len(pending) - done)
            if future.result() != 0:
                failed.append(run)
            state = "FAILED" if failed and failed[-1] is run else "done"
            log(f"train {done}/{len(pending)}: {run.id} {state} ({elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)")
    if failed:
        logs = ", ".join(str(run.folder(output) / LOG_FILE) for run in failed)
        raise StudyError(f"{len(failed)} run(s) failed to train: {', '.join(r.id for r in failed)} (see {logs}); rerun to resume")
