"""The paper's Table 1 the authors' way vs narrowgate's way, side by side in one run.

On the Chameleon-shaped model of ``benchmarks/knockout.py`` (32 layers, 32 heads, 1,024 image tokens,
20 new greedy tokens), a few prompts (the same image, questions of different lengths) are answered under
the paper's five deterministic conditions (baseline, gate_ablated, gate_only, image_ablated,
last_image_ablated):

- the authors' way: eager attention with the post-softmax edit (narrowgate's reference path), batch
  size 1, one condition and one prompt after another, the whole prompt prefilled each time;
- narrowgate's way: ``generate_each`` (the fast path, the prompts batched with left padding, the
  conditions side by side, their shared prefix prefilled once), what the grid runs.

The answers must be identical token for token (else the script fails). Timings are medians of
``--rounds`` interleaved rounds; the last line is the throughput ratio.

    python benchmarks/authors_speed.py [--threads 2] [--prompts 4] [--rounds 1] [--clock wall|cpu] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from knockout import NEW_TOKENS, QUESTION, build

PAPER = ("baseline", "gate_ablated", "gate_only", "image_ablated", "last_image_ablated")
QUESTIONS = (
    QUESTION,
    "what shape is it ? answer :",
    "is there a red square in the picture ? answer the question using a single word . answer :",
    "how many shapes ? answer :",
    "where is the shape in the image ? answer :",
    "what is the color of the big shape ? answer the question using a single word or phrase . answer :",
)


def prompts(count: int):
    """The model, ``count`` prompts (token rows, the image of ``knockout.build``), the family's token ids
    and the decoding options."""
    from interventions import family_spec
    from narrowgate.tiny import build as build_tiny

    model, inputs, layouts, suppress = build(256, 32)
    tokenizer = build_tiny("chameleon")[1].tokenizer
    image = inputs["input_ids"][0, : layouts[0].spans[0].gate[-1] + 1].tolist()
    if not 1 <= count <= len(QUESTIONS):
        raise SystemExit(f"--prompts must be between 1 and {len(QUESTIONS)}")
    rows = [image + tokenizer(q, add_special_tokens=False)["input_ids"] for q in QUESTIONS[:count]]
    options = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "suppress_tokens": suppress,
        "pad_token_id": 0,
    }
    return model, rows, family_spec("chameleon").token_ids(tokenizer), options


def left_padded(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(row)) + row for row in rows])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def authors(model, rows, ids, options) -> dict[tuple[str, int], list[int]]:
    """Every condition and prompt alone, eager post-softmax attention, the whole prompt prefilled."""
    from interventions import find_layouts, intervene

    answers = {}
    for name in PAPER:
        for index, row in enumerate(rows):
            inputs = left_padded([row])
            layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
            with intervene(model, name, layouts, reference=True):
                out = model.generate(**inputs, **options)
            answers[name, index] = out[0, len(row) :].tolist()
    return answers


@torch.no_grad()
def narrowgate(model, rows, ids, options) -> dict[tuple[str, int], list[int]]:
    """The conditions side by side on the batched prompts, the shared prefix prefilled once."""
    from interventions import find_layouts, generate_each

    inputs = left_padded(rows)
    layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
    out = generate_each(model, list(PAPER), layouts, inputs, **options)
    width = inputs["input_ids"].shape[1]
    return {(name, index): out[c * len(rows) + index, width:].tolist() for c, name in enumerate(PAPER) for index in range(len(rows))}


def profile(model, rows, ids, options) -> None:
    """Where narrowgate's time goes: torch's operator profile of one ``generate_each`` call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        narrowgate(model, rows, ids, options)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (on a machine shared with other jobs: --threads 1 --clock cpu)",
    )
    parser.add_argument("--profile", action="store_true", help="also print torch's operator profile of narrowgate's run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    model, rows, ids, options = prompts(args.prompts)
    print(
        f"Chameleon-shaped model ({model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
        f"{model.config.num_attention_heads} heads), {args.prompts} prompts of {min(map(len, rows))}-{max(map(len, rows))} "
        f"tokens x {len(PAPER)} conditions, {NEW_TOKENS} new tokens; {args.threads} threads, float32, {args.clock} clock",
        flush=True,
    )
    narrowgate(model, rows, ids, options)  # warm-up
    seconds = {"authors": [], "narrowgate": []}
    for round_index in range(args.rounds):
        for label, method in (("authors", authors), ("narrowgate", narrowgate)):
            start = clock()
            answers = method(model, rows, ids, options)
            seconds[label].append(clock() - start)
            if label == "authors":
                expected = answers
            elif answers != expected:
                wrong = [key for key in expected if answers[key] != expected[key]]
                raise SystemExit(f"narrowgate's answers differ from the authors' for (condition, prompt) {wrong}")
        print(f"round {round_index + 1}/{args.rounds}: identical answers", file=sys.stderr, flush=True)
    median = {label: statistics.median(v) for label, v in seconds.items()}
    generations = len(PAPER) * len(rows)
    for label, value in median.items():
        print(f"  {label:10s} {value:7.2f} s  ({generations / value:.2f} generations/s)")
    if args.profile:
        profile(model, rows, ids, options)
    print(f"authors' method / narrowgate: {median['authors'] / median['narrowgate']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
