"""``narrowgate study emergence CONFIG --output DIR``: train, evaluate and tabulate an emergence study.

Each step resumes: trained checkpoints, finished grid cells and measure files are kept, so rerunning
the command after an interruption (or after adding seeds or levels) only does what is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

STUDIES = ("emergence",)


def configure(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="study", required=True, metavar="STUDY")
    sub = subparsers.add_parser(
        "emergence", help="which training regime makes a gate form by itself (toy models, factors x seeds)"
    )
    sub.add_argument("config", type=Path, help="study config YAML (configs/study_emergence.yaml, configs/study_mini.yaml)")
    sub.add_argument("--output", required=True, type=Path, help="output folder; rerunning into it resumes the study")
    sub.add_argument("--jobs", type=int, help="training processes at a time (overrides the config's jobs)")
    sub.add_argument("--verbosity", default="WARNING", help="lmms-eval log level (default WARNING)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from narrowgate.core.files import write_json_atomic
    from narrowgate.grid import ConfigError, set_log_level
    from narrowgate.study.aggregate import TABLE, write_table
    from narrowgate.study.evaluation import evaluate, grid_config
    from narrowgate.study.plan import StudyError, load_study
    from narrowgate.study.plots import write_plots
    from narrowgate.study.training import train_runs

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[study {(time.monotonic() - started) / 60:5.1f} min] {message}", file=sys.stderr, flush=True)

    set_log_level(args.verbosity)
    try:
        if args.jobs is not None and args.jobs < 1:
            raise StudyError(f"--jobs must be a positive integer, got {args.jobs}")
        study = load_study(args.config)
        output = args.output
        grid_config(study, output)
        output.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output / "study.json", study.record())
        seeds = len(study.file.seeds)
        log(f"{len(study.runs)} runs ({len(study.runs) // seeds} cells x {seeds} seeds), {len(study.references)} references")
        train_runs(study.runs, output, args.jobs or study.file.jobs, log)
        evaluate(study, output, log, args.verbosity)
        frame = write_table(study, output)
        plots = write_plots(frame, study, output)
    except (StudyError, ConfigError) as error:
        print(f"narrowgate study: {error}", file=sys.stderr)
        return 2
    log(f"wrote {output / TABLE}.csv, {output / TABLE}.md and {len(plots)} plot(s) in {output / 'plots'}")
    print((output / f"{TABLE}.md").read_text())
    return 0
