"""The paper's last experiment in miniature: fine-tune the planted toy with the gate cut.

Starts from the shipped planted toy (``narrowgate/assets/toy_chameleon_planted``, trained with
``gate_only`` active: text reads the image only through the gate), fine-tunes it with ``gate_ablated``
active (no query reads the gate) on the same training drawings, and measures ``narrowgate_smoke_vqa``
through lmms-eval before and after, under the conditions that show where the image reaches the text.
Prints both side by side. Deterministic for its options (CPU, the recipe's thread count). A few minutes.

    python benchmarks/finetune_toy.py [--steps 300] [--lr 0.001] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CONDITIONS = ("baseline", "gate_ablated", "gate_only", "image_ablated")


def main(argv: list[str] | None = None) -> int:
    from narrowgate import toy
    from narrowgate.analyses.subject import TOYS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps (default 300)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 0.001)")
    parser.add_argument("--out", type=Path, help="keep the fine-tuned checkpoint here (default: a temporary folder)")
    args = parser.parse_args(argv)

    planted = toy.TOY_CHECKPOINT.parent / TOYS["planted"]
    recipe = toy.ToyRecipe(**json.loads((planted / toy.RECIPE_FILE).read_text()))
    tuning = dataclasses.replace(recipe, condition="gate_ablated", steps=args.steps, lr=args.lr, warmup=min(50, args.steps))
    print(f"fine-tuning {planted} with {tuning}")
    before = toy.smoke_accuracy(planted, CONDITIONS)
    start = time.perf_counter()
    model, processor = toy.train(tuning, init=planted)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        out = toy.save(model, processor, tuning, args.out or Path(scratch) / "finetuned", {"train_seconds": round(seconds)})
        after = toy.smoke_accuracy(out, CONDITIONS)
    print(f"\nnarrowgate_smoke_vqa (lmms-eval, VQA accuracy); fine-tuning {seconds / 60:.1f} min")
    print(f"{'condition':<16}{'planted':>9}{'fine-tuned':>12}")
    for condition in CONDITIONS:
        print(f"{condition:<16}{before[condition]:>9.3f}{after[condition]:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
