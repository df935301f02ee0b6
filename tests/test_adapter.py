"""``--model narrowgate``: lmms-eval's own ``mistral3_vl`` wrapper on a tiny Mistral 3 checkpoint, under a
condition. Its outputs equal the generic family's engine on the prompt the wrapper writes; a wrapper
with no transformers model inside, a narrowgate name as base, and an error the wrapper swallows are
all refused loudly.
"""

from __future__ import annotations

import re

import pytest
import torch
from test_auto_family import lmms_eval_cli
from test_wrappers import evaluate, fixture_tasks, raw_response, smoke_task
from tiny_cases import load

from interventions import find_layouts, intervene, make_condition
from interventions.session import language_model, session_of
from model_wrappers.adapter import NarrowgateAdapter

BASE = "mistral3_vl"
LIMIT = 3


def adapter(tiny_dir, condition: str, **args) -> NarrowgateAdapter:
    return NarrowgateAdapter(base=BASE, pretrained=str(tiny_dir("mistral3")), condition=condition, device="cpu", **args)


def generic_family(tiny, condition: str, doc_id: int, knockout: str = "zero") -> str:
    """The auto family's engine on the prompt ``mistral3_vl`` writes, with its generation options."""
    task = smoke_task()
    doc = task.eval_docs[doc_id]
    images = task.doc_to_visual(doc)
    prompt = f"<s>[INST]{'[IMG]' * len(images)}\n{task.doc_to_text(doc)}[/INST]"  # mistral3_vl's image prompt
    inputs = tiny.processor(text=prompt, images=images, return_tensors="pt")
    layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], tiny.ids)
    with torch.inference_mode(), intervene(tiny.model, make_condition(condition, knockout=knockout), layouts):
        out = tiny.model.generate(
            **inputs,
            max_new_tokens=task.config.generation_kwargs["max_new_tokens"],
            do_sample=False,
            repetition_penalty=1.2,
            pad_token_id=tiny.processor.tokenizer.eos_token_id,
        )
    return tiny.processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_outputs_equal_the_generic_family(tiny_dir):
    tiny = load(tiny_dir, "mistral3")
    lm = adapter(tiny_dir, "image_ablated", knockout="mask")
    outputs = {}
    for condition in ("image_ablated", "baseline"):
        lm.set_condition(make_condition(condition, knockout="mask"))
        samples = evaluate(lm, limit=LIMIT)
        outputs[condition] = {d: raw_response(s) for d, s in samples.items()}
        for doc_id, text in outputs[condition].items():
            assert text == generic_family(tiny, condition, doc_id, "mask"), f"doc {doc_id} under {condition}"
    assert outputs["image_ablated"] != outputs["baseline"], "the condition changed nothing: the test proves nothing"
    # The wrapper's own model ran, and no intervention outlives a call.
    assert lm.model is lm.base.model and session_of(language_model(lm.model)) is None


def test_cli(tiny_dir, tmp_path):
    args = f"base={BASE},pretrained={tiny_dir('mistral3')},condition=gate_ablated,device=cpu"
    tiny = load(tiny_dir, "mistral3")
    for doc_id, sample in lmms_eval_cli("narrowgate", args, tmp_path).items():
        assert raw_response(sample) == generic_family(tiny, "gate_ablated", doc_id)


def test_refusals(tiny_dir):
    with pytest.raises(
        ValueError, match=r"'dummy' \(lmms_eval.models.simple.dummy.Dummy\) holds no transformers PreTrainedModel"
    ):
        NarrowgateAdapter(base="dummy")
    with pytest.raises(ValueError, match="base=auto_gate_ablated is a narrowgate model already"):
        NarrowgateAdapter(base="auto_gate_ablated")
    with pytest.raises(ValueError, match="give the lmms-eval model to run as base="):
        NarrowgateAdapter(pretrained="x")
    with pytest.raises(ValueError, match="has 2 layers"):
        adapter(tiny_dir, "gate_ablated", layers="5")


def test_an_error_the_wrapper_swallows_is_raised(tiny_dir, tmp_path):
    """mistral3_vl answers "" when generation raises; a document without an image cannot run gate_ablated,
    and the adapter must not let that pass as an answer."""
    lm = adapter(tiny_dir, "gate_ablated")
    with pytest.raises(ValueError, match="needs an image in every row"):
        evaluate(lm, task="ngw_fixture_noimage", include_path=str(fixture_tasks(tmp_path / "tasks")), limit=None)


def test_listed_and_unsupported_bases_refused_by_name(capsys):
    from narrowgate import launcher

    assert launcher.main(["models"]) == 0
    assert re.search(r"^  narrowgate  \(any lmms-eval simple model under a condition", capsys.readouterr().out, re.MULTILINE)
    with pytest.raises(ValueError, match=r"base=huggingface is a chat-only lmms-eval model \(lmms_eval\.models\.chat"):
        NarrowgateAdapter(base="huggingface", pretrained="x")


@pytest.mark.parametrize(("base", "tiny"), [("llava_hf", "llava"), ("qwen2_5_vl", "qwen2_5_vl")])
def test_lmms_eval_hf_wrappers_under_a_condition(tiny_dir, capfd, base, tiny):
    """lmms-eval's llava_hf and qwen2_5_vl (they need decord) on the CPU: baseline under the adapter is the
    wrapper alone; image_ablated changes answers; every sample records its prompt, condition and cut edges,
    and the derived layout is logged once per run."""
    from lmms_eval.models import get_model

    args = {"pretrained": str(tiny_dir(tiny)), "device": "cpu", "device_map": "cpu"}
    capfd.readouterr()
    lm = NarrowgateAdapter(base=base, condition="baseline", **args)
    runs = {}
    for condition in ("baseline", "image_ablated"):
        lm.set_condition(make_condition(condition))
        runs[condition] = evaluate(lm, limit=LIMIT)
    logged = capfd.readouterr().err
    assert logged.count(f"narrowgate (base={base}): condition {{'name': 'baseline'}} on ") == 1
    assert logged.count("derived layout: image tokens") == logged.count(f"narrowgate (base={base}): first prompt: layout") == 1
    alone = evaluate(get_model(base, force_simple=True)(**args), limit=LIMIT, model_name=base)
    answers = {c: {d: raw_response(s) for d, s in samples.items()} for c, samples in runs.items()}
    assert answers["baseline"] == {d: raw_response(s) for d, s in alone.items()}
    assert answers["image_ablated"] != answers["baseline"], "the condition changed nothing: the test proves nothing"
    task = smoke_task()
    for condition, samples in runs.items():
        for doc_id, sample in samples.items():
            record = sample["narrowgate"]
            assert record["condition"]["name"] == condition
            question = task.eval_docs[doc_id]["question"].split()[0].lower()
            assert question in record["prompt"].lower()
            (span,) = record["layout"]["spans"]
            cut = {p for edge in record["cut"] for start, stop in edge["keys"] for p in range(start, stop)}
            whole = {*span["start"], *range(*span["image"]), *span["gate"]}  # image_ablated cuts the whole span
            assert cut == (set() if condition == "baseline" else whole) and len(whole) > 4
