"""Retrain the toy model from the shipped recipe and compare it with the shipped checkpoint.

Reads ``toy_recipe.json`` and ``toy_report.json`` of the shipped checkpoint (``narrowgate.toy.TOY_CHECKPOINT``),
trains the same recipe from scratch (what ``narrowgate train-toy --out DIR`` with the default options does),
measures the retrained checkpoint the same ways as the shipped report (``narrowgate_smoke_vqa`` through
lmms-eval under every condition, in-process macro accuracy on the smoke, seen and held-out drawings), and
prints both side by side with the largest weight difference. Exits 1 if any accuracy differs by more
than ``--tolerance`` (0.03). About 10-20 minutes on 2 CPU cores (mostly training).

    python benchmarks/retrain_toy.py [--out DIR] [--tolerance 0.03]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from narrowgate import toy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, help="where to write the retrained checkpoint (default: a temporary folder)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.03, help="largest accepted accuracy difference (default 0.03)"
    )
    args = parser.parse_args(argv)

    shipped = toy.toy_checkpoint()
    recipe = toy.ToyRecipe(**json.loads((shipped / toy.RECIPE_FILE).read_text()))
    report = json.loads((shipped / toy.REPORT_FILE).read_text())
    print(f"retraining {shipped} with {recipe}")
    start = time.perf_counter()
    model, processor = toy.train(recipe)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        out = toy.save(model, processor, recipe, args.out or Path(scratch) / "toy", {"train_seconds": round(seconds)})
        smoke = toy.smoke_accuracy(out)
        retrained, processor = toy.load(out)
        macro = toy.measure(retrained, processor)
    new_weights, old_weights = retrained.state_dict(), toy.load(shipped)[0].state_dict()
    weight_diff = max(float((new_weights[name] - old_weights[name]).abs().max()) for name in old_weights)

    rows = [(f"smoke_vqa {c}", report["smoke_vqa_accuracy"][c], smoke[c]) for c in smoke]
    rows += [(f"{split} {c}", report["macro_accuracy"][c][split], macro[c][split]) for c in macro for split in macro[c]]
    print(f"\n{'measure':<36}{'shipped':>9}{'retrained':>11}{'diff':>8}")
    for name, old, new in rows:
        print(f"{name:<36}{old:>9.3f}{new:>11.3f}{new - old:>+8.3f}")
    worst = max(abs(new - old) for _, old, new in rows)
    print(
        f"\ntraining {seconds / 60:.1f} min (shipped: {report['train_seconds'] / 60:.1f} min); "
        f"largest weight difference {weight_diff:.3g}; largest accuracy difference {worst:.3f} (tolerance {args.tolerance})"
    )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
