"""The ``lmms_eval`` command: lmms-eval's own CLI, with narrowgate's tasks found and failures reported.

Differences from lmms-eval 0.7.3's ``lmms-eval`` / ``python -m lmms_eval``:

- narrowgate's task folder is always on ``--include_path`` (merged with one given on the command line),
  for evaluations, ``--tasks list`` and ``lmms_eval tasks``; ``lmms_eval models`` lists narrowgate's
  models after lmms-eval's own;
- the filelock workaround is applied (lmms-eval's evaluator imports ``filelock._api``, which filelock 4
  renamed ``filelock._core``);
- before any model loads: an unknown narrowgate model name (``chameleon_gate_ablate``) or
  ``condition=`` fails at once, listing the valid ones, and caption tasks whose ``*_ptb`` metrics need
  Java fail when Java is missing (``narrowgate_tasks.java``), and every data source the tasks need that
  is missing is listed with where to put it (``narrowgate_tasks.sources.check_data``); every other name
  goes to lmms-eval as is;
- SIGINT/SIGTERM stop the run within seconds, with its Java scorers, and print one line
  (``narrowgate.core.interrupt``);
- an error wrapped by lmms-eval's retries (``RetryError[<Future ...>]``) is reported as its cause, a
  damaged safetensors file by its path; a refusal (a ValueError or OSError: wrong input, missing file or
  data, an unsupported model) is one line, without lmms-eval's traceback unless ``--verbosity DEBUG``
  or ``LOGLEVEL=DEBUG``;
- the exit status is non-zero when a run failed, a requested task has no results or a metric is NaN
  (lmms-eval catches the exception, prints it and exits 0).

Data parallel: ``torchrun --nproc_per_node N -m narrowgate.launcher --model ... `` (or
``accelerate launch -m narrowgate.launcher ...``); lmms-eval's evaluator shards the documents.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from narrowgate.core.checkpoints import name_corrupt_file
from narrowgate.core.console import verbose_requested
from narrowgate.core.evaluation import apply_filelock_workaround, is_refusal, plain_error, tasks_dir
from narrowgate.core.interrupt import signal_of, stop_on_signals


def include_paths(given: str | list[str] | None) -> list[str]:
    """``given`` (the user's ``--include_path``) followed by narrowgate's task folder, without repeats."""
    paths = [given] if isinstance(given, str) else list(given or [])
    return list(dict.fromkeys([*paths, tasks_dir()]))


def check_model(name: str, model_args: str | dict | None) -> None:
    """Fail fast, listing the valid names, on a narrowgate-looking name that nobody registered
    (``chameleon_gate_ablate``, bare ``chameleon``) or an unknown ``condition=`` of a narrowgate model.
    Names lmms-eval knows (``llava``, ``llava_hf``, ``qwen2_vl``, ...) pass through untouched."""
    from lmms_eval.models import MODEL_REGISTRY_V2
    from lmms_eval.utils import simple_parse_args_string

    from model_wrappers.registry import condition_names, family_names, model_names, unknown_model_message

    if name not in model_names():
        ours = any(name == family or name.startswith(family + "_") for family in family_names())
        if ours and name not in MODEL_REGISTRY_V2.list_model_names():
            raise ValueError(unknown_model_message(name))
        return
    parsed = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    condition = parsed.get("condition")
    if condition is not None and condition not in condition_names():
        raise ValueError(
            f"unknown condition {condition!r} in --model_args; valid conditions: {', '.join(condition_names())}"
        )


def pretrained_of(model_args: str | dict | None) -> str | None:
    """The ``pretrained=`` of ``--model_args``, if any."""
    from lmms_eval.utils import simple_parse_args_string

    parsed = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    return None if parsed.get("pretrained") is None else str(parsed["pretrained"])


def missing_outputs(args: Any, results: dict | None, started: float) -> list[str]:
    """What a finished run on rank 0 should have produced but did not (empty list: all there)."""
    if results is None:
        return ["lmms-eval returned no results"]
    produced = {**results.get("results", {}), **results.get("groups", {})}
    requested = [task for task in (args.tasks or "").split(",") if task and "*" not in task]
    problems = [f"no results for task {task!r}" for task in requested if task not in produced]
    problems += [
        f"metric {key.split(',')[0]} of task {task!r} is NaN: its computation failed (see the log); the samples "
        "and the other scores were kept"
        for task, scores in produced.items()
        for key, value in scores.items()
        if isinstance(value, float) and math.isnan(value)
    ]
    if args.output_path:
        written = [p for p in Path(args.output_path).glob("**/*.json*") if p.stat().st_mtime >= started - 1]
        if not any(p.name.endswith("_results.json") for p in written):
            problems.append(f"no results json written under {args.output_path}")
        if args.log_samples:
            for task in results.get("configs", {}):
                if not any(p.name.endswith(f"_samples_{task}.jsonl") for p in written):
                    problems.append(f"no samples written for task {task!r} under {args.output_path}")
    return problems


def list_models() -> None:
    """narrowgate's lmms-eval models, printed after lmms-eval's own ``models`` listing (which shows only
    its built-ins)."""
    from model_wrappers.registry import model_names

    names = list(model_names())
    print(f"narrowgate models ({len(names)}, simple; <family>_<condition>; see the narrowgate README):\n")
    for name in names:
        print(f"  {name}")


def list_tasks(argv: list[str]) -> None:
    """lmms-eval's ``tasks`` subcommand with narrowgate's task folder on the include path."""
    import argparse

    from lmms_eval.cli.tasks_cmd import add_tasks_parser, run_tasks

    parser = argparse.ArgumentParser(prog="lmms_eval")
    add_tasks_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    args.include_path = include_paths(args.include_path)
    run_tasks(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    apply_filelock_workaround()
    if argv and argv[0] == "eval":
        argv = argv[1:]
    if argv and argv[0] == "tasks":
        list_tasks(argv)
        return 0
    if not argv or not argv[0].startswith("-"):
        # Other subcommands (models, version, ...) and the banner: lmms-eval's dispatcher as is.
        from lmms_eval.cli.dispatch import main as dispatch

        sys.argv = ["lmms_eval", *argv]
        dispatch()
        if argv and argv[0] == "models" and not {"-h", "--help"} & set(argv):
            list_models()
        return 0

    import lmms_eval.__main__ as lmms_cli

    from narrowgate_tasks.catalog import expand
    from narrowgate_tasks.java import check_java
    from narrowgate_tasks.sources import check_data

    rank = int(os.environ.get("RANK", "0"))
    failures: list[str] = []
    evaluate_one = lmms_cli.cli_evaluate_single

    def observed(args):
        # lmms-eval runs one of these per config; it catches and prints their exceptions.
        started = time.time()
        args.include_path = include_paths(args.include_path)
        try:
            check_model(args.model, args.model_args)
            requested = (args.tasks or "").split(",")
            check_java(requested)
            check_data(expand(requested))
            results, samples = evaluate_one(args)
        except Exception as error:
            shown = name_corrupt_file(plain_error(error), pretrained_of(args.model_args))
            failures.append(f"{args.model} on {args.tasks}: {type(shown).__name__}: {shown}")
            if is_refusal(shown) and not verbose_requested(str(args.verbosity).upper() == "DEBUG"):
                return None, None  # its one line is printed at the end; lmms-eval would add a traceback
            if shown is error:
                raise
            raise shown from None
        if rank == 0:
            failures.extend(
                f"{args.model} on {args.tasks}: {problem}" for problem in missing_outputs(args, results, started)
            )
        return results, samples

    lmms_cli.cli_evaluate_single = observed
    sys.argv = ["lmms_eval", *argv]
    try:
        with stop_on_signals():
            lmms_cli.cli_evaluate()
    except KeyboardInterrupt as stop:
        received = signal_of(stop)
        print(
            f"lmms_eval: interrupted by {received.name}; lmms-eval writes a run's files only when it ends, so "
            f"rerun the command (runs that ended are under --output_path)",
            file=sys.stderr,
        )
        return 128 + received.value
    finally:
        lmms_cli.cli_evaluate_single = evaluate_one
    for failure in failures:
        print(f"lmms_eval: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
