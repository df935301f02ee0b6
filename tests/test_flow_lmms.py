"""Flows through lmms-eval, end to end: ``<family>_flow`` with ``cut=`` edges, ``layers``, ``heads`` and
both knockout semantics logs the answers of an eager no-cache reference (the post-softmax reference
path, every step recomputed from the whole sequence, query sets exactly DST: tests/test_knockout.py
checks those edges against the roles written out) on the tiny checkpoint of every family, and, through
the ``lmms_eval`` command, on the shipped planted toy, where the cuts change answers."""

from __future__ import annotations

import pytest
import torch
from test_wrappers import (
    BIN,
    SMOKE,
    evaluate,
    raw_response,
    read_samples,
    run,
    smoke_task,
)
from tiny_cases import TINY_CASES, Tiny

from interventions import intervene, make_condition
from narrowgate.tiny import TINY_FAMILIES
from narrowgate.toy.recipe import toy_checkpoint

# (cut, layers, heads, knockout): a query range inside the prompt, the last token, generated tokens
# only, in one layer and two heads of different key/value groups; and the gate route, every layer and head.
CASES = [
    ("image>question+image>last+gate>generated", "1", "0+3", "zero"),
    ("gate>text+last_image>*", None, None, "mask"),
]
PLANTED = toy_checkpoint().with_name("toy_chameleon_planted")
# On the planted toy (4 layers, 4 heads): its gate route, cut in every layer (mask) and in two heads of
# the last two layers (zero); the model_args exactly as a user types them.
PLANTED_CASES = ["cut=gate>text,knockout=mask", "cut=gate>text+image>last,layers=2-3,heads=0+1"]


def reference_answer(lm, sample: dict, images: list, max_new_tokens: int, condition) -> str:
    """Greedy decoding with no cache under the eager reference: each token from a full forward over the
    prompt and the tokens so far (the wrapper's suppressed image tokens suppressed, stopping at eos)."""
    audit = sample["narrowgate"]
    inputs, (layout,) = lm.encoder.encode([audit["prompt"]], [images], ["reference"], [audit["layout"]["key"]])
    model = lm.checkpoint.model
    suppressed = list(lm.encoder.spec.token_ids(lm.checkpoint.tokenizer).image)
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or ())
    tokens = torch.zeros(1, 0, dtype=torch.long)
    with torch.no_grad(), intervene(model, condition, [layout], reference=True):
        for _ in range(max_new_tokens):
            logits = model(**Tiny.extend(inputs, tokens), use_cache=False).logits[0, -1]
            logits[suppressed] = float("-inf")
            token = int(logits.argmax())
            if token in eos:
                break
            tokens = torch.cat([tokens, torch.tensor([[token]])], dim=1)
    return lm.checkpoint.tokenizer.decode(tokens[0], skip_special_tokens=True)


def assert_equals_reference(lm, samples: dict, condition, limit: int) -> list[str]:
    task = smoke_task()
    max_new_tokens = task.config.generation_kwargs["max_new_tokens"]
    assert sorted(samples) == list(range(limit))
    answers = []
    for doc_id, sample in sorted(samples.items()):
        assert sample["narrowgate"]["condition"] == condition.to_dict()
        images = task.doc_to_visual(task.eval_docs[doc_id])
        expected = reference_answer(lm, sample, images, max_new_tokens, condition)
        assert raw_response(sample) == expected, f"doc {doc_id} under {condition.to_dict()}"
        answers.append(expected)
    return answers


@pytest.mark.parametrize("case", CASES, ids=["question-last-generated_heads", "gate-text_mask"])
@pytest.mark.parametrize("family", TINY_CASES)
def test_flow_model_equals_the_eager_no_cache_reference(tiny_dir, family, case):
    from model_wrappers.registry import model_class

    cut, layers, heads, knockout = case
    name = family if family in TINY_FAMILIES else "auto"
    lm = model_class(f"{name}_flow")(
        pretrained=str(tiny_dir(family)), cut=cut, layers=layers, heads=heads, knockout=knockout, batch_size=2
    )
    condition = make_condition("flow", cut=cut, layers=layers, heads=heads, knockout=knockout)
    assert lm.condition == condition
    samples = evaluate(lm, limit=2)  # one batch of two prompts of different lengths: left padding
    assert_equals_reference(lm, samples, condition, limit=2)


@pytest.mark.parametrize("model_args", PLANTED_CASES, ids=["mask", "layers-heads"])
def test_lmms_eval_flow_on_the_planted_toy(tmp_path, model_args):
    """``lmms_eval --model chameleon_flow --model_args pretrained=…,cut=…`` (the '>' and '+' survive
    lmms-eval's parsing), answers equal to the reference, and the cut changes some answers."""
    import model_wrappers

    limit = 8
    command = [
        str(BIN / "lmms_eval"), "--model", "chameleon_flow", "--model_args", f"pretrained={PLANTED},{model_args}",
        "--tasks", SMOKE, "--limit", str(limit), "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    result = run(command, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    samples = read_samples(tmp_path / "out", SMOKE)
    options = dict(item.split("=") for item in model_args.split(","))
    condition = make_condition("flow", **options)
    lm = model_wrappers.load_model("chameleon", str(PLANTED))
    answers = assert_equals_reference(lm, samples, condition, limit)
    task = smoke_task()
    max_new_tokens = task.config.generation_kwargs["max_new_tokens"]
    baseline = [
        reference_answer(lm, sample, task.doc_to_visual(task.eval_docs[doc_id]), max_new_tokens, make_condition("baseline"))
        for doc_id, sample in sorted(samples.items())
    ]
    assert answers != baseline, "the cut changed no answer: the comparison proves little"
