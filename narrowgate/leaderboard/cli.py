"""``narrowgate leaderboard``: the command line."""

from __future__ import annotations

import argparse
import sys

from narrowgate.leaderboard.plot import write_plot
from narrowgate.leaderboard.render import FORMATS, render, write
from narrowgate.leaderboard.table import build


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", help="a `narrowgate grid` output folder or an `lmms_eval --output_path` folder (--log_samples)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="summary",
        help="summary (default; fits a 100-column terminal) or a full table: md, csv, html (page with plot), latex",
    )
    parser.add_argument("--output", help="write the table to this file instead of printing it")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also write the grouped bar chart per task to this PNG",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated metric names (or TASK:METRIC) to show; default all",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=10_000,
        help="bootstrap resamples (default 10000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    try:
        board = build(
            args.directory,
            metrics=args.metrics.split(",") if args.metrics else None,
            n_resamples=args.resamples,
            seed=args.seed,
        )
    except ValueError as error:
        print(f"narrowgate leaderboard: {error}", file=sys.stderr)
        return 2
    if args.output:
        print(f"wrote {write(board, args.format, args.output)}", file=sys.stderr)
    else:
        sys.stdout.write(render(board, args.format))
    if args.plot:
        print(f"wrote {write_plot(board, args.plot)}", file=sys.stderr)
    return 0
