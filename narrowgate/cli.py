"""The ``narrowgate`` command: one subcommand per module, each with ``configure(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from narrowgate.core.interrupt import run_command

# subcommand -> (module, one-line help). Modules keep heavy imports inside their functions.
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny": ("narrowgate.tiny", "write a tiny random-weight checkpoint of a model family"),
    "grid": ("narrowgate.grid", "run a models x conditions x tasks grid through lmms-eval (resumable)"),
    "leaderboard": ("narrowgate.leaderboard", "tabulate a grid folder: change from baseline with bootstrap CIs"),
    "demo": ("narrowgate.demo", "the smoke grid on tiny checkpoints plus its leaderboard, offline"),
    "train-toy": ("narrowgate.toy.cli", "train the toy native model (a small Chameleon) on the shapes world"),
    "analyze": ("narrowgate.analyses.cli", "the paper's analyses (attention, gap, overlap, patching, locate, progressive)"),
    "study": ("narrowgate.study", "train, evaluate and tabulate a study of toy models (emergence: does a gate form?)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="narrowgate", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.configure(subparsers.add_parser(name, help=help_text, description=module.__doc__))
        modules[name] = module
    args = parser.parse_args(argv)
    return run_command(f"narrowgate {args.command}", modules[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
