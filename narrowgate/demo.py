"""The embedded default: two toy Chameleons x every condition x the smoke tasks, then the leaderboard,
fully offline, in a few minutes on a laptop CPU.

The toys are small real Chameleon models trained on a synthetic shapes world and shipped with
narrowgate: one reads the image through many tokens, the other (trained under gate_only) only
through its gate, so the leaderboard shows both patterns: "no gate" and "a narrow gate". The grid is
the repository's ``configs/smoke.yaml`` (``--config`` runs another). Rerunning resumes: finished
cells are kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SMOKE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/demo", help="output folder (default runs/demo); reruns resume")
    parser.add_argument(
        "--config", default=str(SMOKE_CONFIG), help="grid config (default the repository's configs/smoke.yaml)"
    )
    parser.add_argument("--limit", type=int, default=None, help="documents per task (default: the config's)")
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' progress bars and output (default: OUTPUT/grid.log)"
    )


def run(args: argparse.Namespace) -> int:
    # Offline before anything imports huggingface_hub or datasets: the demo never touches the network.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from narrowgate import leaderboard
    from narrowgate.grid import ConfigError, load_config, run_grid, set_log_level
    from narrowgate_tasks.java import JavaMissingError
    from narrowgate_tasks.sources import DataMissingError

    set_log_level("WARNING")

    config_path = Path(args.config)
    if not config_path.is_file():
        print(
            f"narrowgate demo: no grid config at {config_path}; the demo runs from a checkout of the repository "
            f"(configs/smoke.yaml) — pass --config PATH otherwise",
            file=sys.stderr,
        )
        return 2
    output = Path(args.output)
    try:
        report = run_grid(load_config(config_path), output, limit=args.limit, verbose=args.verbose)
    except (ConfigError, JavaMissingError, DataMissingError) as error:
        print(f"narrowgate demo: {error}", file=sys.stderr)
        return 2
    board = leaderboard.build(output)
    paths = {fmt: leaderboard.write(board, fmt, output / f"leaderboard.{fmt}") for fmt in ("md", "csv", "html")}
    plot = leaderboard.write_plot(board, output / "leaderboard.png")
    print(leaderboard.render(board, "summary"))
    print(f"HTML page: {paths['html'].resolve()}")
    print(f"Plot:      {plot.resolve()}")
    print(f"Table:     {paths['md'].resolve()} (CSV: {paths['csv'].resolve()})")
    if report.failed:
        print(f"{len(report.failed)} cell(s) failed; see {output / 'grid.json'}", file=sys.stderr)
        return 1
    return 0
