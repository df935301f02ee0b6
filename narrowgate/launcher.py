"""The ``lmms_eval`` command: lmms-eval's own CLI, with narrowgate's tasks found and failures reported.

Differences from lmms-eval 0.7.3's ``lmms-eval`` / ``python -m lmms_eval``:

- narrowgate's task folder is always on ``--include_path`` (merged with one given on the command line);
- the filelock workaround is applied (lmms-eval's evaluator imports ``filelock._api``, which filelock 4
  renamed ``filelock._core``);
- an unknown narrowgate model name (``chameleon_gate_ablate``) or ``condition=`` fails at once, listing
  the valid ones;
- the exit status is non-zero when a run failed or a requested task has no results (lmms-eval catches the
  exception, prints it and exits 0).

Data parallel: ``torchrun --nproc_per_node N -m narrowgate.launcher --model ... `` (or
``accelerate launch -m narrowgate.launcher ...``); lmms-eval's evaluator shards the documents.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
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


def include_paths(given: str | list[str] | None) -> list[str]:
    """``given`` (the user's ``--include_path``) followed by narrowgate's task folder, without repeats."""
    paths = [given] if isinstance(given, str) else list(given or [])
    return list(dict.fromkeys([*paths, tasks_dir()]))


def check_model(name: str, model_args: str | None) -> None:
    """Fail fast, listing the valid names, on a narrowgate-looking model name that is not registered
    (``chameleon_gate_ablate``) or an unknown ``condition=`` of a narrowgate model."""
    from lmms_eval.utils import simple_parse_args_string

    from model_wrappers.registry import CONDITION_NAMES, FAMILY_WRAPPERS, model_names, unknown_model_message

    if not any(name == family or name.startswith(family + "_") for family in FAMILY_WRAPPERS):
        return  # not ours: lmms-eval resolves it
    if name not in model_names():
        raise ValueError(unknown_model_message(name))
    parsed = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    condition = parsed.get("condition")
    if condition is not None and condition not in CONDITION_NAMES:
        raise ValueError(
            f"unknown condition {condition!r} in --model_args; valid conditions: {', '.join(CONDITION_NAMES)}"
        )


def missing_outputs(args: Any, results: dict | None, started: float) -> list[str]:
    """What a finished run on rank 0 should have produced but did not (empty list: all there)."""
    if results is None:
        return ["lmms-eval returned no results"]
    produced = {**results.get("results", {}), **results.get("groups", {})}
    requested = [task for task in (args.tasks or "").split(",") if task and "*" not in task]
    problems = [f"no results for task {task!r}" for task in requested if task not in produced]
    if args.output_path:
        written = [p for p in Path(args.output_path).glob("**/*.json*") if p.stat().st_mtime >= started - 1]
        if not any(p.name.endswith("_results.json") for p in written):
            problems.append(f"no results json written under {args.output_path}")
        if args.log_samples:
            for task in results.get("configs", {}):
                if not any(p.name.endswith(f"_samples_{task}.jsonl") for p in written):
                    problems.append(f"no samples written for task {task!r} under {args.output_path}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    apply_filelock_workaround()
    if argv and argv[0] == "eval":
        argv = argv[1:]
    if not argv or not argv[0].startswith("-"):
        # Subcommands (tasks, models, version, ...) and the banner: lmms-eval's dispatcher as is.
        from lmms_eval.cli.dispatch import main as dispatch

        sys.argv = ["lmms_eval", *argv]
        dispatch()
        return 0

    import lmms_eval.__main__ as lmms_cli

    rank = int(os.environ.get("RANK", "0"))
    failures: list[str] = []
    evaluate_one = lmms_cli.cli_evaluate_single

    def observed(args):
        # lmms-eval runs one of these per config; it catches and prints their exceptions.
        started = time.time()
        args.include_path = include_paths(args.include_path)
        try:
            check_model(args.model, args.model_args)
            results, samples = evaluate_one(args)
        except Exception as error:
            failures.append(f"{args.model} on {args.tasks}: {type(error).__name__}: {error}")
            raise
        if rank == 0:
            failures.extend(
                f"{args.model} on {args.tasks}: {problem}" for problem in missing_outputs(args, results, started)
            )
        return results, samples

    lmms_cli.cli_evaluate_single = observed
    sys.argv = ["lmms_eval", *argv]
    try:
        lmms_cli.cli_evaluate()
    finally:
        lmms_cli.cli_evaluate_single = evaluate_one
    for failure in failures:
        print(f"lmms_eval: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
