"""``narrowgate train-toy``: train a toy checkpoint from a recipe, save it, measure it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .model import load
from .recipe import (
    CODEBOOKS,
    CURVE_FILE,
    GATE_TARGETS,
    IMAGE_TOKENS,
    QUESTION_SETS,
    RECIPE_FILE,
    TOY_CHECKPOINT,
    TRAINING_CONDITIONS,
    WORLDS,
    ToyRecipe,
)
from .report import (
    folder_bytes,
    format_table,
    measure,
    save,
    smoke_accuracy,
    write_report,
)
from .trainer import PROBE, train
from .world import world_of


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = ToyRecipe()
    parser.add_argument(
        "--out", required=True, type=Path, help=f"checkpoint folder to write (the shipped one: {TOY_CHECKPOINT})"
    )
    parser.add_argument(
        "--recipe", type=Path, help=f"start from a recipe file (a checkpoint's {RECIPE_FILE}) instead of the defaults"
    )
    parser.add_argument("--seed", type=int, help=f"weights, data and order (default {defaults.seed})")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"optimizer steps (default {defaults.steps}); step-based, so a seed gives the same model on any machine",
    )
    parser.add_argument(
        "--image-loss",
        type=float,
        help=f"weight of the image-token loss, the 'native' objective (default {defaults.image_loss}; 0: answers and captions only)",
    )
    parser.add_argument("--no-captions", action="store_true", help="train on the questions only")
    parser.add_argument(
        "--gate-target",
        choices=GATE_TARGETS,
        help=f"what the gate token (<eoss>, right after the image) is trained to predict: the first token of the "
        f"drawing's caption or of that question's answer (default {defaults.gate_target}: nothing)",
    )
    parser.add_argument(
        "--t2i",
        type=float,
        metavar="W",
        help=f"weight of text-to-image rows, one per drawing: its caption, then its image codes to predict "
        f"(default {defaults.t2i}: none)",
    )
    parser.add_argument(
        "--world",
        choices=WORLDS,
        help=f"what the toy sees (default {defaults.world}): one flat-coloured shape, or textured scenes in which "
        "no single image patch gives the answer away",
    )
    parser.add_argument(
        "--questions",
        choices=QUESTION_SETS,
        help=f"the scenes' questions (default {defaults.questions}): colour/shape/position of one object, or "
        "count/majority colour/one colour? over 2-4 objects",
    )
    parser.add_argument(
        "--image-tokens",
        type=int,
        choices=tuple(IMAGE_TOKENS),
        help=f"image tokens per image (default {defaults.image_tokens}): 4 x 4-pixel patches of a 32- or 64-px image",
    )
    parser.add_argument(
        "--codebook", choices=CODEBOOKS, help=f"the VQ codebook: k-means of the patch features or random (default {defaults.codebook})"
    )
    parser.add_argument(
        "--generation-first",
        type=float,
        metavar="SHARE",
        help=f"share of the steps, first, that train generation only (default {defaults.generation_first}); the questions join after",
    )
    parser.add_argument("--layers", type=int, help=f"transformer layers (default {defaults.num_hidden_layers})")
    parser.add_argument(
        "--hidden-size",
        type=int,
        help=f"model width (default {defaults.hidden_size}); divisible by the {defaults.num_attention_heads} heads",
    )
    parser.add_argument(
        "--intermediate-size", type=int, help="MLP width (default 3 x the hidden size; "
        f"{defaults.intermediate_size} at the default width)"
    )
    parser.add_argument(
        "--knockout", choices=("zero", "mask"), help=f"the --condition's knockout semantics (default {defaults.knockout})"
    )
    parser.add_argument(
        "--attention-loss",
        type=float,
        help=f"weight of the attention the --condition's cut edges take (default {defaults.attention_loss})",
    )
    parser.add_argument(
        "--threads", type=int, help=f"CPU threads (default {defaults.threads}); part of the recipe: the last bits depend on it"
    )
    parser.add_argument(
        "--condition",
        choices=TRAINING_CONDITIONS,
        help=f"a condition active while training (default {defaults.condition}); gate_only plants a narrow gate",
    )
    parser.add_argument(
        "--init", type=Path, help="fine-tune this toy checkpoint instead of training from scratch (recorded in the report)"
    )
    parser.add_argument("--skip-measure", action="store_true", help="do not measure the conditions after training")


def recipe_from(args: argparse.Namespace) -> ToyRecipe:
    """The recipe of a ``train-toy`` command line: the defaults or ``--recipe``, then the options given."""
    fields = {f.name for f in dataclasses.fields(ToyRecipe)}
    base: dict = {}
    if args.recipe is not None:
        base = json.loads(Path(args.recipe).read_text())
        if not isinstance(base, dict):
            raise ValueError(f"{args.recipe}: expected a JSON object of recipe fields, got {type(base).__name__}")
        unknown = sorted(set(base) - fields)
        if unknown:
            raise ValueError(
                f"{args.recipe}: unknown recipe field(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
            )
    given = {
        "seed": args.seed,
        "steps": args.steps,
        "image_loss": args.image_loss,
        "condition": args.condition,
        "threads": args.threads,
        "attention_loss": args.attention_loss,
        "knockout": args.knockout,
        "gate_target": args.gate_target,
        "t2i": args.t2i,
        "world": args.world,
        "questions": args.questions,
        "image_tokens": args.image_tokens,
        "codebook": args.codebook,
        "generation_first": args.generation_first,
        "num_hidden_layers": args.layers,
        "hidden_size": args.hidden_size,
        "intermediate_size": args.intermediate_size,
    }
    if args.hidden_size is not None and args.intermediate_size is None:
        given["intermediate_size"] = 3 * args.hidden_size
    base.update({name: value for name, value in given.items() if value is not None})
    if args.no_captions:
        base["captions"] = False
    return ToyRecipe(**base)


def run(args: argparse.Namespace) -> int:
    try:
        recipe = recipe_from(args)
    except (OSError, ValueError) as error:
        print(f"narrowgate train-toy: {error}", file=sys.stderr)
        return 2
    resume = resume_file(args.out)
    resume.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    curve: list[dict] = []
    model, processor = train(recipe, resume=resume, init=args.init, curve=curve)
    seconds = time.perf_counter() - start
    report: dict = {"train_seconds": round(seconds), "parameters": sum(p.numel() for p in model.parameters())}
    if args.init is not None:
        report["init"] = str(args.init)
    probe = {"probe": "seen", "n": PROBE, "points": curve}
    out = save(model, processor, recipe, args.out, report, extra={CURVE_FILE: probe})
    resume.unlink(missing_ok=True)
    if not args.skip_measure:
        print("train-toy: measuring the saved checkpoint under each condition ...")
        world = world_of(recipe)
        report["smoke_vqa_accuracy"] = smoke_accuracy(out, world=world)
        report["macro_accuracy"] = measure(*load(out), world=world)
        write_report(out, report)
        print(f"{world.task} (lmms-eval, VQA accuracy):")
        print("\n".join(f"  {condition:<22}{value:.3f}" for condition, value in report["smoke_vqa_accuracy"].items()))
        print(f"macro exact-match accuracy, every drawing asked all {len(world.kinds)} questions (in process):")
        print(format_table(report["macro_accuracy"]))
    print(f"train-toy: wrote {out} ({folder_bytes(out) / 1e6:.2f} MB) after {seconds / 60:.1f} min of training")
    return 0


def resume_file(out: Path) -> Path:
    """Where ``train-toy --out OUT`` keeps its training state until OUT is written."""
    return out.parent / f".{out.name}.train-state.pt"
