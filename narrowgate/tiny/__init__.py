"""Write a tiny random-weight checkpoint of a model family, for offline tests and demos.

Each checkpoint is a real transformers model (the family's own class) with its real processor and a
tokenizer built offline, at a size that runs on a CPU in milliseconds: hidden size 64, 2 layers,
grouped-query attention (4 query heads, 2 key/value heads), at most 64 image tokens per image.
The image-token structure (start tokens, image run, gate tokens) is the family's own, with the token
strings of ``interventions.families``; the weights are random, so nothing it says means anything.

One file per concern: ``tokenizer`` (the word-level tokenizer), ``sizes`` (the shared model sizes),
``families`` (one builder named after each declared family), ``architectures`` (the transformers
architectures the generic ``auto`` family is tested on).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from interventions.families import FAMILIES, family_spec
from narrowgate.tiny import families
from narrowgate.tiny.architectures import ARCHITECTURES, TINY_ARCHITECTURES

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, ProcessorMixin

TINY_FAMILIES: tuple[str, ...] = tuple(FAMILIES)

# family -> builder returning (config, processor): the function of narrowgate.tiny.families named after it.
BUILDERS: dict[str, Callable[[], tuple[PreTrainedConfig, ProcessorMixin]]] = {
    family: getattr(families, family) for family in FAMILIES
}


def build(family: str, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A tiny random-weight model of ``family`` (eval mode) and its processor; same seed, same weights.

    ``family`` is one of the declared families or an architecture of the generic ``auto`` family
    (``narrowgate.tiny.architectures``)."""
    import torch
    import transformers

    if family in ARCHITECTURES:
        from interventions.generic import model_class_name

        config, processor = ARCHITECTURES[family]()
        model_class = model_class_name(config)
    else:
        config, processor = BUILDERS[family]()
        model_class = family_spec(family).model_class
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_class)(config)
    return model.eval(), processor


def save(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write ``build(family, seed)`` to ``out_dir`` with ``save_pretrained``; returns the directory."""
    out = Path(out_dir)
    model, processor = build(family, seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", nargs="?", help="a family or an architecture of the auto family (see --list)")
    parser.add_argument("out_dir", nargs="?", help="directory to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    parser.add_argument("--list", action="store_true", help="list the families and auto-family architectures, and exit")


def run(args: argparse.Namespace) -> int:
    if args.list:
        print("\n".join([*TINY_FAMILIES, *TINY_ARCHITECTURES]))
        return 0
    known = f"families: {', '.join(TINY_FAMILIES)}; auto-family architectures: {', '.join(TINY_ARCHITECTURES)}"
    if args.family is None or args.out_dir is None:
        print(f"narrowgate tiny: give FAMILY and OUT_DIR ({known})", file=sys.stderr)
        return 2
    if args.family not in (*TINY_FAMILIES, *TINY_ARCHITECTURES):
        print(f"narrowgate tiny: unknown family or architecture {args.family!r} ({known})", file=sys.stderr)
        return 2
    out = save(args.family, args.out_dir, args.seed)
    print(f"wrote a tiny {args.family} checkpoint (seed {args.seed}) to {out}")
    return 0
