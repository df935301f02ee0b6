"""Conditions side by side (``generate_each``, the grid's default: the shared prefix prefilled once) vs
one condition at a time.

1. The Chameleon-shaped model of ``benchmarks/knockout.py`` (1,045 tokens, 20 new tokens): a greedy
   generation under the five deterministic paper conditions (baseline, gate_ablated, gate_only,
   image_ablated, last_image_ablated) side by side, as a ratio to one condition (gate_ablated) alone
   (through ``generate_each`` as the sequential grid runs it, and through ``intervene`` with a
   one-forward prefill) and to the five run one after another; and the peak resident-memory growth
   of each (fresh process each) as a ratio to one condition.
2. The smoke grid (``configs/smoke.yaml``: 7 conditions, 3 random seeds) through ``narrowgate grid``,
   batched (the default) vs ``--sequential``, into fresh folders, in this one run, without the Java
   caption metrics; the whole run and the cells alone.
3. Nine conditions vs the baseline alone through ``narrowgate grid`` on the planted toy's smoke VQA:
   the cells' time as a ratio (lmms-eval's per-cell work included) and the whole command's.

Timings are medians of interleaved rounds, so that a busy machine biases all variants alike.

    python benchmarks/batched.py [--threads 2] [--rounds 3] [--grid-limit 32] [--grid-only 'toy-chameleon/*'] [--skip chameleon|grid|nine]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch
from knockout import NEW_TOKENS, build, generate, memory_pool, peak_growth_mb

REPO = Path(__file__).resolve().parents[1]
PAPER = ("baseline", "gate_ablated", "gate_only", "image_ablated", "last_image_ablated")
ALONE = ("gate_ablated",)


@torch.no_grad()
def run_conditions(model, inputs, layouts, suppress, names) -> torch.Tensor:
    """A greedy generation of the prompt under ``names`` side by side (one name: a plain batch of 1)."""
    from interventions import generate_each

    options = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False, "pad_token_id": 0}
    return generate_each(model, list(names), layouts, inputs, suppress_tokens=suppress, **options)


def one_forward(model, inputs, layouts, suppress, name) -> torch.Tensor:
    """One condition through ``intervene``: the prompt prefilled in one forward."""
    from interventions import intervene

    with intervene(model, name, layouts):
        return generate(model, inputs, suppress)


def memory_growth(job) -> float:
    """Peak resident-memory growth (MB) of one generation under ``names``, in a fresh process."""
    args, names = job
    torch.set_num_threads(args.threads)
    model, inputs, layouts, suppress = build(args.hidden, args.heads)
    return peak_growth_mb(lambda: run_conditions(model, inputs, layouts, suppress, names))


def chameleon_shaped(args) -> None:
    model, inputs, layouts, suppress = build(args.hidden, args.heads)
    print(
        f"Chameleon-shaped model: {model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
        f"{inputs['input_ids'].shape[1]} tokens, {NEW_TOKENS} new tokens; {args.threads} threads, float32",
        flush=True,
    )
    together = run_conditions(model, inputs, layouts, suppress, PAPER)
    unsplit = []
    for index, name in enumerate(PAPER):  # the exactness the speed is for
        assert torch.equal(together[index : index + 1], run_conditions(model, inputs, layouts, suppress, [name])), name
        unsplit.append(torch.equal(together[index : index + 1], one_forward(model, inputs, layouts, suppress, name)))
    print(f"  side by side = each alone, token for token; = the one-forward prefill for {sum(unsplit)} of {len(PAPER)} conditions")
    times = {"one condition": [], "one condition, one-forward prefill": [], "five, one after another": [], "five side by side": []}
    for round_index in range(args.rounds):
        start = time.perf_counter()
        run_conditions(model, inputs, layouts, suppress, ALONE)
        times["one condition"].append(time.perf_counter() - start)
        start = time.perf_counter()
        one_forward(model, inputs, layouts, suppress, ALONE[0])
        times["one condition, one-forward prefill"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for name in PAPER:
            run_conditions(model, inputs, layouts, suppress, [name])
        times["five, one after another"].append(time.perf_counter() - start)
        start = time.perf_counter()
        run_conditions(model, inputs, layouts, suppress, PAPER)
        times["five side by side"].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    median = {label: statistics.median(v) for label, v in times.items()}
    one = median["one condition"]
    for label, seconds in median.items():
        print(f"  {label:36s} {seconds:7.2f} s  {seconds / one:5.2f}x one condition")
    print(f"  side by side vs one after another: {median['five, one after another'] / median['five side by side']:.2f}x faster")
    if not args.no_memory:
        with memory_pool() as pool:
            one_mb, five_mb = pool.map(memory_growth, [(args, ALONE), (args, PAPER)], chunksize=1)
        print(f"  peak memory growth of a generation: one condition {one_mb:.0f} MB, five side by side {five_mb:.0f} MB ({five_mb / one_mb:.2f}x)")


def smoke_grid(args) -> None:
    """Both modes of the smoke grid, total time and the cells' own (without process start and model loads).
    The Java caption metrics (PTB tokenizer, METEOR: 10-15 s per caption cell, the same work in both
    modes) are skipped (``NARROWGATE_SKIP_PTB=1``), so that what differs is not drowned."""
    import json
    import subprocess

    command = [sys.executable, "-m", "narrowgate.grid", str(REPO / "configs" / "smoke.yaml"), "--limit", str(args.grid_limit)]
    for pattern in args.grid_only:
        command += ["--only", pattern]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO), "NARROWGATE_SKIP_PTB": "1"}
    seconds, cells = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for label, extra in (("sequential", ["--sequential"]), ("batched", [])):
            start = time.perf_counter()
            subprocess.run([*command, "--output", f"{folder}/{label}", *extra], env=env, check=True, capture_output=True)
            seconds[label] = time.perf_counter() - start
            report = json.loads(Path(folder, label, "grid.json").read_text())
            cells[label] = sum(cell["seconds"] for cell in report["cells"])
    print(
        f"smoke grid (limit {args.grid_limit}{', only ' + ' '.join(args.grid_only) if args.grid_only else ''}, Java caption metrics skipped): "
        f"sequential {seconds['sequential']:.1f} s, batched {seconds['batched']:.1f} s ({seconds['sequential'] / seconds['batched']:.2f}x faster; "
        f"process start and model loads included); the cells alone: {cells['sequential']:.1f} s vs {cells['batched']:.1f} s "
        f"({cells['sequential'] / cells['batched']:.2f}x)"
    )


NINE = [
    *PAPER,
    *({"name": "gate_ablated", "layers": str(layer), "label": f"gate_ablated_layer{layer}"} for layer in range(4)),
]


def nine_conditions(args) -> None:
    """A grid of nine conditions (the paper's five and gate_ablated in each of the planted toy's four layers)
    vs the baseline alone, on the smoke VQA set, both through ``narrowgate grid`` (batched), in interleaved
    rounds: what the conditions add to one run, with lmms-eval's per-cell work (a run, scoring, files) in."""
    import json
    import subprocess

    import yaml

    planted = str(REPO / "narrowgate" / "assets" / "toy_chameleon_planted")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    seconds, cells = {"baseline": [], "nine": []}, {"baseline": [], "nine": []}
    with tempfile.TemporaryDirectory() as folder:
        for label, conditions in (("baseline", ["baseline"]), ("nine", NINE)):
            config = {
                "tasks": ["narrowgate_smoke_vqa"],
                "limit": args.grid_limit,
                "model_args": {"batch_size": 4},
                "conditions": conditions,
                "models": [{"name": "planted", "family": "chameleon", "pretrained": planted}],
            }
            Path(folder, f"{label}.yaml").write_text(yaml.safe_dump(config))
        for round_index in range(args.rounds):
            for label in seconds:
                output = Path(folder, f"{label}-{round_index}")
                command = [sys.executable, "-m", "narrowgate.grid", str(Path(folder, f"{label}.yaml")), "--output", str(output)]
                start = time.perf_counter()
                subprocess.run(command, env=env, check=True, capture_output=True)
                seconds[label].append(time.perf_counter() - start)
                cells[label].append(sum(cell["seconds"] for cell in json.loads((output / "grid.json").read_text())["cells"]))
    one, nine = (statistics.median(cells[label]) for label in ("baseline", "nine"))
    whole = {label: statistics.median(values) for label, values in seconds.items()}
    print(
        f"nine conditions vs the baseline alone (planted toy, smoke VQA, limit {args.grid_limit}, median of {args.rounds}): "
        f"cells {nine:.2f} s vs {one:.2f} s ({nine / one:.2f}x); whole command, process start and model load included: "
        f"{whole['nine']:.1f} s vs {whole['baseline']:.1f} s ({whole['nine'] / whole['baseline']:.2f}x)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--grid-limit", type=int, default=32, help="documents per smoke task (the whole set: 32)")
    parser.add_argument("--grid-only", action="append", default=[], metavar="PATTERN", help="cells of the smoke grid")
    parser.add_argument("--skip", choices=("chameleon", "grid", "nine"), action="append", default=[])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if "chameleon" not in args.skip:
        chameleon_shaped(args)
    if "grid" not in args.skip:
        smoke_grid(args)
    if "nine" not in args.skip:
        nine_conditions(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
