"""``narrowgate grid``: the command line of the grid runner."""

from __future__ import annotations

import argparse
import sys

from narrowgate.grid.config import ConfigError, load_config
from narrowgate.grid.runner import run_grid
from narrowgate_tasks.java import JavaMissingError
from narrowgate_tasks.sources import DataMissingError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="grid config YAML (see configs/smoke.yaml, configs/paper_table1.yaml)")
    parser.add_argument("--output", required=True, help="output folder; rerunning into it resumes the grid")
    parser.add_argument("--limit", type=int, default=None, help="documents per task (overrides the config's limit)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only cells whose id MODEL/CONDITION/TASK matches this shell pattern (repeatable), "
        "e.g. 'Chameleon-7B/*' or '*/gate_ablated/*'",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="generate each cell on its own (default: a model's conditions side by side in one pass, same outputs)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        metavar="N",
        help="at most N rows (conditions x batch size) per forward of the batched pass (default: all conditions)",
    )
    parser.add_argument("--verbosity", default="WARNING", help="lmms-eval log level (default WARNING)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show progress bars, library output and tracebacks here instead of in OUTPUT/grid.log "
        "(also: LOGLEVEL=DEBUG)",
    )


def set_log_level(verbosity: str) -> None:
    """Show lmms-eval's (loguru) messages from ``verbosity`` up only, as its own CLI does."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=verbosity.upper())


def run(args: argparse.Namespace) -> int:
    set_log_level(args.verbosity)
    try:
        config = load_config(args.config)
        if args.max_rows is not None and args.max_rows < 1:
            raise ConfigError(f"--max-rows must be a positive integer, got {args.max_rows}")
        report = run_grid(
            config,
            args.output,
            limit=args.limit,
            only=args.only,
            verbosity=args.verbosity,
            sequential=args.sequential,
            max_rows=args.max_rows,
            verbose=args.verbose,
        )
    except (ConfigError, JavaMissingError, DataMissingError) as error:
        print(f"narrowgate grid: {error}", file=sys.stderr)
        return 2
    done = sum(s.status in ("done", "skipped") for s in report.statuses)
    print(f"{done}/{len(report.statuses)} cells done in {report.output}", file=sys.stderr)
    return 1 if report.failed else 0
