"""The ``narrowgate`` command. Each subcommand is a module with ``configure(parser)`` and ``run(args)``;
its docstring is the subcommand's ``--help`` text (shown with its line breaks, ``markup`` as `markup`)."""

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
    "demo": ("narrowgate.demo", "two toy models x every condition and their leaderboard, offline"),
    "train-toy": ("narrowgate.toy.cli", "train the toy native model (a small Chameleon) on the shapes world"),
    "analyze": ("narrowgate.analyses.cli", "the paper's analyses (attention, gap, overlap, patching, locate, progressive)"),
    "study": ("narrowgate.study", "train, evaluate and tabulate a study of toy models (emergence: does a gate form?)"),
}


DESCRIPTION = """\
narrowgate measures how a vision-language model reads an image: it cuts attention paths inside the
real transformers model (the "gate" token after the image, the image tokens) and scores the model
with lmms-eval under each cut.

Start here:
  narrowgate demo                      two toy models x every condition, offline, minutes on a CPU
  narrowgate grid CONFIG --output DIR  models x conditions x tasks (configs/paper_table1.yaml), resumable
  narrowgate leaderboard DIR           the table: each condition's change from baseline, with 95% CIs
  lmms_eval --model chameleon_gate_ablated --model_args pretrained=facebook/chameleon-7b \\
            --tasks narrowgate_vqav2   one condition with lmms-eval's own command

`narrowgate COMMAND --help` explains a command; the README says what a GPU run needs (gated models,
memory, time, Java)."""


def help_text(docstring: str | None) -> str:
    """A module docstring as --help text: its line breaks kept, ``markup`` shown as `markup`."""
    return (docstring or "").replace("``", "`")


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="narrowgate", description=DESCRIPTION, formatter_class=raw)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.configure(subparsers.add_parser(name, help=summary, description=help_text(module.__doc__), formatter_class=raw))
        modules[name] = module
    args = parser.parse_args(argv)
    return run_command(f"narrowgate {args.command}", modules[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
