"""``narrowgate sweep``: the command line of a sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from narrowgate.grid import ConfigError, ModelSpec, set_log_level


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", required=True, help="the checkpoint (hub id or path)")
    parser.add_argument("--family", required=True, help="its family (chameleon, emu3, llava, ..., auto)")
    parser.add_argument("--name", help="the model's name in the results (default: the checkpoint's folder name)")
    parser.add_argument("--task", required=True, help="a narrowgate task, e.g. narrowgate_smoke_vqa")
    parser.add_argument("--condition", required=True, help="the condition to sweep, e.g. flow or gate_ablated")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="an option of the condition (repeatable), e.g. cut=gate>text"
    )
    parser.add_argument(
        "--window", type=int, action="append", metavar="W", help="layers per window (repeatable: several sizes in one pass; default 1)"
    )
    parser.add_argument("--stride", type=int, default=1, help="layers between the starts of two windows (default 1)")
    parser.add_argument("--layers", help="the layers the windows slide over, e.g. 8-23 (default all)")
    parser.add_argument(
        "--heads", action="store_true", help="one window per attention head instead, each cutting that head in every layer of --layers"
    )
    parser.add_argument("--output", required=True, help="output folder (a grid folder); rerunning into it resumes the sweep")
    parser.add_argument("--limit", type=int, help="documents of the task (default all)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="a model argument, e.g. batch_size=8")
    parser.add_argument("--max-rows", type=int, metavar="N", help="at most N rows (windows x batch size) per forward")
    parser.add_argument("--plot", type=Path, help="the plot's file (default OUTPUT/sweep.png)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--verbosity", default="WARNING", help="lmms-eval log level (default WARNING)")


def key_values(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` items, values typed as in a grid config (YAML scalars: 4 is an int, mask a string)."""
    import yaml

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        parsed[key] = yaml.safe_load(value) if value else value
    return parsed


def sweep_from_args(args: argparse.Namespace):
    from interventions.conditions import resolve_layers
    from narrowgate.sweep.plan import head_windows, layer_windows
    from narrowgate.sweep.runner import Sweep, model_shape

    if args.heads and args.window:
        raise ConfigError("--heads sweeps single heads of --layers; --window slides over layers: choose one")
    num_layers, num_heads = model_shape(args.pretrained)
    try:
        span = resolve_layers(args.layers, num_layers) if args.layers else tuple(range(num_layers))
    except ValueError as error:
        raise ConfigError(f"--layers {args.layers}: {error}") from None
    windows = head_windows(num_heads, span) if args.heads else layer_windows(num_layers, args.window or [1], args.stride, span)
    name = args.name or Path(args.pretrained.rstrip("/")).name
    model = ModelSpec(name, args.family, args.pretrained, None, key_values(args.model_arg, "--model-arg"))
    return Sweep(model, args.task, args.condition, tuple(windows), key_values(args.option, "--option"), args.limit)


def run(args: argparse.Namespace) -> int:
    from narrowgate.sweep.output import summary, write
    from narrowgate.sweep.runner import run_sweep
    from narrowgate_tasks.java import JavaMissingError

    set_log_level(args.verbosity)
    try:
        sweep = sweep_from_args(args)
        result = run_sweep(sweep, args.output, n_resamples=args.resamples, verbosity=args.verbosity, max_rows=args.max_rows)
    except (ConfigError, JavaMissingError) as error:
        print(f"narrowgate sweep: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"narrowgate sweep: {error}", file=sys.stderr)
        return 1
    print(summary(result))
    for path in write(result, Path(args.output), args.plot):
        print(f"wrote {path}", file=sys.stderr)
    return 0
