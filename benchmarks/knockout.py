"""Speed and memory of the attention knockout on a Chameleon-shaped model at the real sequence length.

A random-weight ChameleonForConditionalGeneration with Chameleon-7B's depth and head count (32 layers,
32 heads) but a smaller width (default 256, so heads of 8), fed BOS, <racm3:break>, 1024 image
tokens, <eoss> and a VQA-style prompt (the image tokens stay placeholders: the VQ encoder is not what
is measured). It first checks at this length that the fast path's logits equal the eager
reference's. Then, for every condition, it times the prefill and a 20-token greedy generation as a
ratio to the same model with no intervention, the eager reference (the authors' post-softmax method)
as a ratio to the fast path, and the peak resident-memory growth of one prefill (each in a fresh
process) as a ratio to no intervention. Variants are timed in interleaved rounds and the median is
kept, so that a busy machine biases all of them alike; on a shared machine, ``--threads 1 --clock
cpu`` gives steadier ratios. The eager reference's cost grows with the number of heads (it
materialises heads x queries x keys probabilities), so ``--heads`` moves its ratio; the fast path's
ratios hardly move.

    python benchmarks/knockout.py [--threads 2] [--clock wall|cpu] [--rounds 3] [--hidden 256] [--heads 32]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import statistics
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

IMAGE_TOKENS = 1024
QUESTION = "what color is the shape ? answer the question using a single word or phrase . answer :"
NEW_TOKENS = 20

# (label, condition name, knockout, reference); None = the model with no intervention at all.
VARIANTS = [
    ("none", None, None, False),
    ("baseline (bound, no edit)", "baseline", "zero", False),
    ("gate_ablated", "gate_ablated", "zero", False),
    ("gate_only", "gate_only", "zero", False),
    ("image_ablated", "image_ablated", "zero", False),
    ("last_image_ablated", "last_image_ablated", "zero", False),
    ("random_image_ablated", "random_image_ablated", "zero", False),
    ("gate_randomized", "gate_randomized", "zero", False),
    ("gate_ablated, mask", "gate_ablated", "mask", False),
    ("gate_only, mask", "gate_only", "mask", False),
    ("random_image_ablated, mask", "random_image_ablated", "mask", False),
    ("gate_ablated, eager reference", "gate_ablated", "zero", True),
    ("gate_only, eager reference", "gate_only", "zero", True),
]


def build(hidden: int, heads: int):
    """The model, its inputs and layouts (ids from the tiny Chameleon tokenizer, never hard-coded)."""
    from transformers import ChameleonForConditionalGeneration

    from interventions import family_spec, find_layouts
    from narrowgate.tiny import build as build_tiny

    tiny, processor = build_tiny("chameleon")
    config = tiny.config
    config.hidden_size = hidden
    config.intermediate_size = int(hidden * 11008 / 4096)
    config.num_hidden_layers = 32
    config.num_attention_heads = config.num_key_value_heads = heads
    config.max_position_embeddings = 4096
    torch.manual_seed(0)
    model = ChameleonForConditionalGeneration(config).eval()
    tokenizer = processor.tokenizer
    ids = family_spec("chameleon").token_ids(tokenizer)
    prompt = tokenizer(QUESTION, add_special_tokens=False)["input_ids"]
    row = [tokenizer.bos_token_id, *ids.start, *ids.image * IMAGE_TOKENS, *ids.gate, *prompt]
    inputs = {"input_ids": torch.tensor([row]), "attention_mask": torch.ones(1, len(row), dtype=torch.long)}
    layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
    suppress = list(ids.image + ids.start + ids.gate)
    return model, inputs, layouts, suppress


def context(model, variant, layouts):
    from contextlib import nullcontext

    from interventions import intervene, make_condition

    _, name, knockout, reference = variant
    if name is None:
        return nullcontext()
    return intervene(model, make_condition(name, knockout=knockout), layouts, reference=reference)


@torch.no_grad()
def prefill(model, inputs):
    return model(**inputs, logits_to_keep=1)


@torch.no_grad()
def generate(model, inputs, suppress):
    return model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        suppress_tokens=suppress,
        pad_token_id=0,
    )


def timed(fn, clock) -> float:
    start = clock()
    fn()
    return clock() - start


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_growth(args_and_variant) -> float:
    """Peak resident-memory growth (MB) during one prefill, sampled every millisecond in a fresh process."""
    args, variant = args_and_variant
    torch.set_num_threads(args.threads)
    model, inputs, layouts, _ = build(args.hidden, args.heads)

    def run():
        with context(model, variant, layouts):
            prefill(model, inputs)

    return peak_growth_mb(run)


def peak_growth_mb(fn) -> float:
    """Peak resident-memory growth (MB) while ``fn()`` runs, sampled every millisecond."""
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb())
            time.sleep(0.001)

    gc.collect()
    before = resident_mb()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return peak[0] - before


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--heads", type=int, default=32, help="attention heads (Chameleon-7B: 32)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a shared machine with --threads 1)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    model, inputs, layouts, suppress = build(args.hidden, args.heads)
    config = model.config
    print(
        f"Chameleon-shaped model: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads x {config.hidden_size // config.num_attention_heads}, "
        f"intermediate {config.intermediate_size}, vocab {config.vocab_size}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
        f"sequence {inputs['input_ids'].shape[1]} tokens ({IMAGE_TOKENS} image tokens, gate at "
        f"{layouts[0].spans[0].gate[0]}), {NEW_TOKENS} new tokens; torch {torch.__version__}, "
        f"{args.threads} threads, float32, {args.clock} clock, {args.rounds} rounds (median)",
        flush=True,
    )
    text = slice(layouts[0].spans[0].gate[-1] + 1, None)
    for variant in VARIANTS:
        if variant[3]:
            fast_variant = next(v for v in VARIANTS if v[1:3] == variant[1:3] and not v[3])
            logits = []
            for v in (fast_variant, variant):
                with context(model, v, layouts), torch.no_grad():
                    logits.append(model(**inputs).logits[0, text])
            print(f"max |fast - eager reference| over the text logits, {variant[1]}: {(logits[0] - logits[1]).abs().max():.1e}")
    times = {variant[0]: {"prefill": [], "generate": []} for variant in VARIANTS}
    for variant in VARIANTS:  # warm-up
        with context(model, variant, layouts):
            prefill(model, inputs)
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            with context(model, variant, layouts):
                times[variant[0]]["prefill"].append(timed(lambda: prefill(model, inputs), clock))
                times[variant[0]]["generate"].append(timed(lambda: generate(model, inputs, suppress), clock))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    median = {label: {k: statistics.median(v) for k, v in entry.items()} for label, entry in times.items()}

    memory = {}
    if not args.no_memory:
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            chosen = [v for v in VARIANTS if v[0] in ("none", "gate_ablated", "gate_only, mask", "gate_ablated, eager reference")]
            for variant, growth in zip(chosen, pool.map(memory_growth, [(args, v) for v in chosen], chunksize=1)):
                memory[variant[0]] = growth

    none = median["none"]
    print(f"\nno intervention: prefill {none['prefill']:.3f} s, generate({NEW_TOKENS}) {none['generate']:.3f} s")
    print(f"{'condition':34s} {'prefill':>9s} {'generate':>9s} {'peak mem':>9s}   (ratio to no intervention)")
    for label, entry in median.items():
        mem = f"{memory[label] / memory['none']:8.2f}x" if label in memory and memory["none"] > 0 else f"{'-':>9s}"
        print(f"{label:34s} {entry['prefill'] / none['prefill']:8.2f}x {entry['generate'] / none['generate']:8.2f}x {mem}")
    if memory:
        print("peak resident-memory growth of one prefill: " + ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items()))
    for name in ("gate_ablated", "gate_only"):
        fast, eager = median[name], median[f"{name}, eager reference"]
        print(
            f"eager reference / fast path, {name}: prefill {eager['prefill'] / fast['prefill']:.2f}x, "
            f"generate({NEW_TOKENS}) {eager['generate'] / fast['generate']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
