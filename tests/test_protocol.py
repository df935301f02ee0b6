"""The protocol a config claims is the protocol that runs: each family's exact prompt, its gate where the
protocol puts it, and the attention implementation the user asked for (docs/protocol.md §2, §4)."""

from __future__ import annotations

import pytest
import torch
from tiny_cases import load, same_size_pair

from interventions import find_layouts, intervene, make_condition, record_gate
from model_wrappers.registry import model_names
from narrowgate.core.evaluation import tasks_dir
from narrowgate.tiny import TINY_FAMILIES
from narrowgate_tasks import prompts

QUESTION = "What is it?"
# The exact text each wrapper gives its processor for one image and a VQA question, the task's request
# in the model's prompt variant (lmms_eval_specific_kwargs) inside the family's prompt.
PROMPTS = {
    "chameleon": "<image>What is it?\nAnswer the question using a single word or phrase. Answer:",
    "emu3": "You are a helpful assistant. USER: <image>What is it?\nAnswer the question using a single word or phrase. ASSISTANT:",
    "llava": "USER: <image>\nWhat is it?\nAnswer the question using a single word or phrase. ASSISTANT:",
    "llava_onevision": (
        "<|im_start|>user <image><|im_end|>\n<|im_start|>user\nWhat is it?\n"
        "Answer the question using a single word or phrase.<|im_end|>\n<|im_start|>assistant\n"
    ),
    "pixtral": "[INST][IMG]\nWhat is it?\nAnswer the question using a single word or phrase.[/INST]",
    "janus": "<|User|>: <image_placeholder>\nWhat is it?\nAnswer the question using a single word or phrase.\n\n<|Assistant|>:",
    "qwen2_vl": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is it?\nAnswer the question using a single word or phrase."
        "<|im_end|>\n<|im_start|>assistant\n"
    ),
}
# The gate token(s) the protocol names, as written in the processed prompt (LLaVA-1.5: the text after the run).
GATES = {
    "chameleon": ["<eoss>"],
    "emu3": ["<|extra_201|>", "<|image end|>"],
    "llava": ["\n"],
    "llava_onevision": ["<|im_end|>"],
    "pixtral": ["[IMG_END]"],
    "janus": ["<end_of_image>"],
    "qwen2_vl": ["<|vision_end|>"],
}


@pytest.fixture(scope="module")
def wrapper(tiny_dir):
    import model_wrappers

    loaded = {}

    def get(family, **model_args):
        key = (family, tuple(sorted(model_args.items())))
        if key not in loaded:
            loaded[key] = model_wrappers.load_model(family, str(tiny_dir(family)), **model_args)
        return loaded[key]

    return get


def test_every_family_is_pinned():
    assert set(PROMPTS) == set(GATES) == set(TINY_FAMILIES)


def task_request(model: str | None, question: str = QUESTION) -> str:
    """The VQA request narrowgate's tasks give lmms-eval model ``model`` (lmms-eval resolves the variant)."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager("ERROR", include_path=tasks_dir(), include_defaults=False, model_name=model)
    task = get_task_dict(["narrowgate_smoke_vqa"], manager)["narrowgate_smoke_vqa"]
    return task.doc_to_text({"question": question})


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_exact_prompt_and_gate(wrapper, images, family):
    lm = wrapper(family)
    prompt = lm.format_prompt(task_request(lm.model_name), 1)
    assert prompt == PROMPTS[family]
    inputs = lm.processor(text=[prompt], images=[images[0]], return_tensors="pt", **lm.encoder.processor_kwargs)
    (layout,) = find_layouts(inputs["input_ids"], inputs["attention_mask"], lm.family_ids)
    (span,) = layout.spans
    assert lm.tokenizer.convert_ids_to_tokens([int(inputs["input_ids"][0, p]) for p in span.gate]) == GATES[family]


def test_every_registered_model_gets_its_family_prompt_variant():
    """lmms-eval matches a task's per-model variants by the exact --model name: every registered model
    (a new condition included) gets its family's variant, the family's own name (Python, the grid) too."""
    for name, (family, _) in model_names().items():
        assert prompts.model_variant(name) == prompts.model_variant(family), f"{name}: add it to _prompt_variants_vqa.yaml"
    assert task_request("chameleon_gate_only") == task_request("chameleon") == prompts.vqa_request(QUESTION) + " Answer:"
    assert task_request("llava_gate_only") == task_request(None) == prompts.vqa_request(QUESTION)


def test_llava_onevision_gate_is_declared(tiny_dir, images):
    """A prompt that puts anything but <|im_end|> after the image fails instead of moving the gate."""
    tiny = load(tiny_dir, "llava_onevision")
    moved = tiny.processor(text=["<|im_start|>user <image>\nwhat is it ?<|im_end|>"], images=[images[0]], return_tensors="pt")
    with pytest.raises(ValueError, match=r"is not followed by its gate \(expected ids \[\d+\], found \[\d+\]\)"):
        find_layouts(moved["input_ids"], moved["attention_mask"], tiny.ids)
    # <|im_end|> closing the question's turn is ordinary text, not a stray gate.
    inputs = tiny.processor(text=[PROMPTS["llava_onevision"]], images=[images[0]], return_tensors="pt")
    (layout,) = find_layouts(inputs["input_ids"], inputs["attention_mask"], tiny.ids)
    assert len(layout.spans) == 1 and inputs["input_ids"][0].tolist().count(tiny.ids.gate[0]) == 2


def test_eager_is_honoured(tiny_dir, images):
    """A model loaded with attn_implementation=eager runs the post-softmax reference; sdpa the fast path;
    anything else is refused rather than silently replaced."""
    tiny = load(tiny_dir, "chameleon")
    inputs = tiny.inputs(same_size_pair(images))
    layouts = tiny.layouts(inputs)
    condition = make_condition("gate_ablated")
    gates = [p for layout in layouts for p in layout.spans[0].gate]
    for implementation, reference in (("eager", True), ("sdpa", False)):
        model = type(tiny.model).from_pretrained(tiny_dir("chameleon"), attn_implementation=implementation).eval()
        with torch.no_grad(), intervene(model, condition, layouts):
            attentions = model(**inputs, output_attentions=True).attentions
        # the reference returns every layer's probabilities; SDPA returns none (transformers records nothing)
        assert len(attentions) == (2 if reference else 0)
        assert all((a[row, :, :, gate] == 0).all() for a in attentions for row, gate in enumerate(gates))
        # recording or patching alone runs the same path, also after an intervene() block inside it
        with torch.no_grad(), record_gate(model, layouts):
            alone = model(**inputs, output_attentions=True).attentions
            with intervene(model, condition, layouts):
                pass
            after = model(**inputs, output_attentions=True).attentions
        assert len(alone) == len(after) == (2 if reference else 0)
    flash = type(tiny.model).from_pretrained(tiny_dir("chameleon"))
    flash.config.get_text_config()._attn_implementation_internal = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='flash_attention_2', which narrowgate cannot intervene on"):
        with intervene(flash, condition, layouts):
            pass


def test_wrapper_records_the_attention_it_ran(wrapper):
    """Through lmms-eval: the samples of an eager model say that the eager reference ran."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from model_wrappers.audit import lift_audits

    for implementation in ("eager", "sdpa"):
        lm = wrapper("chameleon", attn_implementation=implementation)
        lm.set_condition(make_condition("gate_only"))
        assert lm.reference == (implementation == "eager")
        manager = TaskManager("ERROR", include_path=tasks_dir(), include_defaults=False, model_name=lm.model_name)
        task = "narrowgate_smoke_vqa"
        results = evaluator.simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=1, log_samples=True, verbosity="ERROR")
        (sample,) = lift_audits(results["samples"][task])
        assert sample["narrowgate"]["attn_implementation"].startswith(f"{implementation}: narrowgate's")
