"""Speed and memory of the attention knockout on a Chameleon-shaped model at the real sequence length.

A random-weight ChameleonForConditionalGeneration with Chameleon-7B's depth and head count (32 layers,
32 heads) but a smaller width (default 256, so heads of 8), fed BOS, <racm3:break>, 1024 image
tokens, <eoss> and a VQA-style prompt (the image tokens stay placeholders: the VQ encoder is not what
is measured). It first checks at this length that the fast path's logits equal the eager
reference's. Then, for every condition, it times the prefill and a 20-token greedy generation as a
ratio to the same model with no intervention, the eager reference (the authors' post-softmax method)
as a ratio to the fast path, and the exact peak resident-memory growth of one prefill (each in a
fresh process, after a warm-up prefill) as a ratio to no intervention. Variants are timed in
interleaved rounds and the median is kept, so that a busy machine biases all of them alike; on a
shared machine, ``--threads 1 --clock cpu`` gives steadier ratios. The eager reference's cost grows
with the number of heads (it materialises heads x queries x keys probabilities), so ``--heads``
moves its ratio; the fast path's ratios hardly move.

    python benchmarks/knockout.py [--threads 2] [--clock wall|cpu] [--rounds 3] [--hidden 256] [--heads 32]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

IMAGE_TOKENS = 1024
QUESTION = "what color is the shape ? answer the question using a single word or phrase . answer :"
NEW_TOKENS = 20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)

# (label, condition name, its options, reference); None = the model with no intervention at all.
ZERO, MASK = {"knockout": "zero"}, {"knockout": "mask"}
FLOW = {"cut": "image>question+image>last"}
VARIANTS = [
    ("none", None, None, False),
    ("baseline (bound, no edit)", "baseline", ZERO, False),
    ("gate_ablated", "gate_ablated", ZERO, False),
    ("gate_only", "gate_only", ZERO, False),
    ("image_ablated", "image_ablated", ZERO, False),
    ("last_image_ablated", "last_image_ablated", ZERO, False),
    ("random_image_ablated", "random_image_ablated", ZERO, False),
    ("gate_randomized", "gate_randomized", ZERO, False),
    ("gate_ablated, mask", "gate_ablated", MASK, False),
    ("gate_only, mask", "gate_only", MASK, False),
    ("random_image_ablated, mask", "random_image_ablated", MASK, False),
    ("flow image>question+image>last", "flow", FLOW, False),
    ("flow image>question+image>last, mask", "flow", {**FLOW, **MASK}, False),
    ("image_to_generated", "image_to_generated", ZERO, False),
    ("gate_only, heads 0+5", "gate_only", {"heads": "0+5"}, False),
    ("gate_only, heads 0+5, mask", "gate_only", {"heads": "0+5", **MASK}, False),
    ("gate_ablated, eager reference", "gate_ablated", ZERO, True),
    ("gate_only, eager reference", "gate_only", ZERO, True),
]
# (condition, options) whose fast-path logits are compared with the eager reference's at this length
CHECKED = (
    ("gate_ablated", ZERO),
    ("gate_only", ZERO),
    ("random_image_ablated", MASK),
    ("flow", {**FLOW, **MASK}),
    ("gate_only", {"heads": "0+5"}),
    ("gate_only", {"heads": "0+5", **MASK}),
)


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

    _, name, options, reference = variant
    if name is None:
        return nullcontext()
    return intervene(model, make_condition(name, **options), layouts, reference=reference)


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


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_growth(args_and_variant) -> float:
    """Peak resident-memory growth (MB) of one prefill, in a fresh process, after one warm-up prefill of
    the same variant (one-time allocations, such as thread pools and kernel caches, are not a prefill's)."""
    args, variant = args_and_variant
    torch.set_num_threads(args.threads)
    model, inputs, layouts, _ = build(args.hidden, args.heads)

    def run():
        with context(model, variant, layouts):
            prefill(model, inputs)

    run()
    return peak_growth_mb(run)


def peak_growth_mb(fn) -> float:
    """Peak resident-memory growth (MB) while ``fn()`` runs: the kernel's exact high-water mark (VmHWM,
    reset through /proc/self/clear_refs; Linux), not a sampled one. Reproducible in a ``memory_pool``
    process; elsewhere glibc's adaptive mmap threshold makes it depend on the allocation history."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current resident set
    before = _status_mb("VmRSS")
    fn()
    return _status_mb("VmHWM") - before


def memory_pool():
    """A pool of fresh processes, one task each, for ``peak_growth_mb``: each sets glibc's mmap threshold
    to a fixed 128 KiB before anything is built, so that freed tensors leave the resident set at once.
    With glibc's default (adaptive) threshold, whether they stay resident depends on the allocation
    history: identical prefills measured 145-162 MB."""
    return multiprocessing.get_context("spawn").Pool(1, initializer=_fixed_mmap_threshold, maxtasksperchild=1)


def _fixed_mmap_threshold() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024):
        raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed: the memory measure needs glibc (run with --no-memory)")


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
    for name, options in CHECKED:
        logits = []
        for reference in (False, True):
            with context(model, (name, name, options, reference), layouts), torch.no_grad():
                logits.append(model(**inputs).logits[0, text])
        described = ", ".join(f"{key}={value}" for key, value in options.items())
        print(f"max |fast - eager reference| over the text logits, {name}, {described}: {(logits[0] - logits[1]).abs().max():.1e}")
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
        with memory_pool() as pool:
            growths = pool.map(memory_growth, [(args, v) for v in VARIANTS], chunksize=1)
        memory = {variant[0]: growth for variant, growth in zip(VARIANTS, growths)}

    none = median["none"]
    print(f"\nno intervention: prefill {none['prefill']:.3f} s, generate({NEW_TOKENS}) {none['generate']:.3f} s")
    print(f"{'condition':34s} {'prefill':>9s} {'generate':>9s} {'peak mem':>9s}   (ratio to no intervention; peak mem: MB)")
    for label, entry in median.items():
        mem = f"{memory[label] / memory['none']:8.3f}x {memory[label]:6.1f}" if memory else f"{'-':>9s}"
        print(f"{label:34s} {entry['prefill'] / none['prefill']:8.2f}x {entry['generate'] / none['generate']:8.2f}x {mem}")
    for name in ("gate_ablated", "gate_only"):
        fast, eager = median[name], median[f"{name}, eager reference"]
        print(
            f"eager reference / fast path, {name}: prefill {eager['prefill'] / fast['prefill']:.2f}x, "
            f"generate({NEW_TOKENS}) {eager['generate'] / fast['generate']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
