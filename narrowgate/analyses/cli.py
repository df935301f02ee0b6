"""``narrowgate analyze NAME --model M --output DIR``: one of the paper's analyses on any checkpoint.

``--model`` is a checkpoint path with ``--family``, or a shipped toy: ``toy`` (the natural toy Chameleon)
or ``planted`` (trained with the gate as the only image->text path). ``--data`` is ``shapes`` (bundled,
the default), ``folder:NAME`` or ``flickr30k`` (from ``$NARROWGATE_DATA_DIR``, see
``narrowgate.analyses.data``). Writes ``DIR/NAME.csv``, ``DIR/NAME.json`` (with a summary) and
``DIR/NAME.png``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from pathlib import Path

from . import ANALYSES

# analysis-specific options: parameter -> (type, help); an analysis gets the flag (``--some-name`` for
# some_name) when its ``analyse`` has the parameter, with the parameter's default; a tuple default takes
# one or more values
OPTIONS = {
    "k": (int, "neighbours for chi (capped at n - 1; default: 30 kept below the smallest class)"),
    "pairs": (int, "base/target image pairs"),
    "after": (int, "prompt tokens after the gate that are candidates"),
    "z": (float, "density peaks' merging confidence (the paper's 1.65)"),
    "prompt": (str, "vqa (each image with every question of its data), caption, or any request text"),
    "conditions": (str, "the conditions swept"),
    "measure": (str, "attention (the paper's) or contribution (attention x value norm)"),
}


def module(name: str):
    return importlib.import_module(f"narrowgate.analyses.{name}")


def parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters of analysis ``name``'s ``analyse`` (its settings)."""
    found = inspect.signature(module(name).analyse).parameters
    return {key: p for key, p in found.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def configure(parser: argparse.ArgumentParser) -> None:
    from interventions.conditions import CONDITIONS, KNOCKOUTS

    subparsers = parser.add_subparsers(dest="analysis", required=True, metavar="NAME")
    for name in ANALYSES:
        analysis = module(name)
        sub = subparsers.add_parser(name, help=analysis.HELP, description=analysis.__doc__)
        sub.add_argument("--model", required=True, help="checkpoint path (with --family), or the shipped toy / planted")
        sub.add_argument("--family", help="the checkpoint's family (narrowgate tiny --list)")
        sub.add_argument(
            "--data", default="shapes", help="shapes (default), scenes_single, scenes_aggregation, folder:NAME or flickr30k"
        )
        sub.add_argument("-n", "--n", type=int, default=96, help="examples (default 96)")
        sub.add_argument("--output", required=True, type=Path, help="folder for NAME.csv, NAME.json, NAME.png")
        sub.add_argument("--condition", default="baseline", choices=list(CONDITIONS), help="run under this condition")
        sub.add_argument("--layers", help="the condition's layers (all by default; e.g. 0-3+8, last:2)")
        sub.add_argument("--knockout", default="zero", choices=KNOCKOUTS, help="knockout semantics (default zero)")
        sub.add_argument("--cut", help="flow's edges (e.g. 'gate>text+image>last'); needed with --condition flow")
        sub.add_argument("--heads", help="the knockout's heads (all by default; e.g. 0+5)")
        sub.add_argument("--batch-size", type=int, default=16)
        sub.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
        sub.add_argument("--dtype", help="float32, bfloat16, ... (default: the wrapper's)")
        sub.add_argument("--seed", type=int, default=0, help="pairs and random token choices")
        # --seed and --knockout reach ``analyse`` too where it has those parameters
        for key, parameter in parameters(name).items():
            if key in OPTIONS:
                kind, text = OPTIONS[key]
                default, many = parameter.default, isinstance(parameter.default, tuple)
                shown = "" if default is None else f" (default {' '.join(default) if many else default})"
                sub.add_argument(
                    "--" + key.replace("_", "-"), type=kind, default=default, nargs="+" if many else None, help=text + shown
                )


def condition_from(args: argparse.Namespace):
    """The ``--condition`` (with ``--layers``/``--knockout``/``--cut``/``--heads``) of an analysis command; None
    for baseline."""
    from interventions import make_condition

    if args.condition == "baseline":
        return None
    return make_condition(args.condition, layers=args.layers, knockout=args.knockout, cut=args.cut, heads=args.heads)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from .data import load_examples
    from .subject import Subject, resolve_model

    analysis = module(args.analysis)
    try:
        family, pretrained = resolve_model(args.model, args.family)
        condition = condition_from(args)
        examples = load_examples(args.data, args.n)
    except (OSError, ValueError) as error:
        print(f"narrowgate analyze {args.analysis}: {error}", file=sys.stderr)
        return 2
    subject = Subject(family, pretrained, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    if condition is not None:
        condition.layer_indices(subject.num_layers)
    settings = {key: getattr(args, key) for key in parameters(args.analysis)}
    settings = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
    try:
        result = analysis.analyse(subject, examples, condition, **settings)
    except ValueError as error:
        print(f"narrowgate analyze {args.analysis}: {error}", file=sys.stderr)
        return 2
    if result.report:
        print(result.report)
    summary = {
        "analysis": args.analysis,
        **subject.describe(),
        "data": examples.name,
        "n": len(examples),
        "condition": (condition.to_dict() if condition else {"name": "baseline"}),
        **result.summary,
    }
    paths = result.write(args.output, summary)
    print(f"narrowgate analyze {args.analysis}: wrote {', '.join(str(p) for p in paths.values())}")
    return 0
