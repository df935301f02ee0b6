"""Tiny checkpoints: every family loads back with plain transformers, runs, and lays out its image
exactly as the family's documented structure says (start tokens, image run, gate tokens)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForImageTextToText, AutoProcessor

from interventions.families import FAMILIES
from narrowgate import cli
from narrowgate.tiny import BUILDERS, TINY_FAMILIES, build

PROMPT = "What color is the shape?\nAnswer the question using a single word or phrase. Answer:"


def load(path: Path, family: str):
    model_class = getattr(transformers, FAMILIES[family].model_class)
    return model_class.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def encode(processor, family: str, images: list, prompts: list[str] | None = None):
    prompts = prompts or [FAMILIES[family].placeholder + PROMPT] * len(images)
    return processor(images=images, text=prompts, padding=True, return_tensors="pt")


# The span one wide 48x32 image becomes, per family, as (start tokens, image run): derived from the
# processor's own settings and outputs (sequence length, resized size, patch grid), and for LLaVA-OneVision
# counted by hand from the anyres rules. The gate tokens come from interventions.families.
def _emu3(processor, inputs, model):
    height, width = (int(x) // 8 for x in inputs["image_sizes"][0])  # the VQ downsamples by 8
    header = ["<|image start|>", *str(height), "*", *str(width), "<|image token|>"]
    return header, ["<image>"] * (height * (width + 1))


def _pixtral(processor, inputs, model):
    height, width = (int(x) // processor.patch_size for x in inputs["image_sizes"][0])
    rows = (["[IMG]"] * width + ["[IMG_BREAK]"]) * height
    return [], rows[:-1]  # the last row's break is the gate [IMG_END]


def _qwen2_vl(processor, inputs, model):
    merged = int(inputs["image_grid_thw"][0].prod()) // processor.image_processor.merge_size**2
    return ["<|vision_start|>"], ["<|image_pad|>"] * merged


EXPECTED_SPAN = {
    "chameleon": lambda processor, inputs, model: (["<racm3:break>"], ["<image>"] * processor.image_seq_length),
    "emu3": _emu3,
    "llava": lambda processor, inputs, model: ([], ["<image>"] * model.config.image_seq_length),
    # 48x32 picks the 1x2 tile grid (4x8 patches), unpadded to 4x6 = 24, + 4 row newlines + the 4x4 base = 44
    "llava_onevision": lambda processor, inputs, model: ([], ["<image>"] * 44),
    "pixtral": _pixtral,
    "janus": lambda processor, inputs, model: (
        ["<begin_of_image>"],
        ["<image_placeholder>"] * processor.num_image_tokens,
    ),
    "qwen2_vl": _qwen2_vl,
}


def test_families_match_the_registry():
    assert set(TINY_FAMILIES) == set(BUILDERS) == set(FAMILIES) == set(EXPECTED_SPAN)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_checkpoint_loads_runs_and_lays_out_the_image(family, tiny_dir, images):
    spec = FAMILIES[family]
    model, processor = load(tiny_dir(family), family)
    assert type(model).__name__ == spec.model_class
    assert sum(p.numel() for p in model.parameters()) <= 1_000_000

    wide = images[1]
    assert wide.size == (48, 32)
    inputs = encode(processor, family, [wide])
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])

    start, run = EXPECTED_SPAN[family](processor, inputs, model)
    span = [*start, *run, *spec.gate_tokens]
    assert 0 < len(run) <= 64
    first = tokens.index(span[0])
    assert tokens[first : first + len(span)] == span
    image_tokens = set(spec.image_tokens) | set(spec.start_tokens) | set(spec.gate_tokens)
    outside = [t for t in tokens[:first] + tokens[first + len(span) :] if t in image_tokens]
    assert outside == [], f"image tokens outside the span: {outside}"
    # the prompt follows the span directly: for LLaVA-style families its first word is the gate
    assert tokens[first + len(span)] == "what"
    if processor.tokenizer.bos_token is not None:
        assert tokens[0] == processor.tokenizer.bos_token

    ids = spec.token_ids(processor.tokenizer)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, len(tokens), model.config.get_text_config().vocab_size)
    assert torch.isfinite(logits).all()

    prompt_length = inputs["input_ids"].shape[1]
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, suppress_tokens=list(ids.image))
    assert torch.equal(out[:, :prompt_length], inputs["input_ids"])
    assert 1 <= out.shape[1] - prompt_length <= 4
    assert not set(out[0, prompt_length:].tolist()) & set(ids.image)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batch_is_left_padded_and_generates(family, tiny_dir, images):
    """Two images of different shapes and prompts of different lengths in one batch."""
    model, processor = load(tiny_dir(family), family)
    placeholder = FAMILIES[family].placeholder
    inputs = encode(processor, family, images[:2], [placeholder + "What is this?", placeholder + PROMPT])
    mask = inputs["attention_mask"]
    assert mask[:, -1].all() and not mask[0, 0], "the shorter prompt must be padded on the left"
    assert (inputs["input_ids"][mask == 0] == processor.tokenizer.pad_token_id).all()
    out = model.generate(
        **inputs,
        max_new_tokens=4,
        do_sample=False,
        suppress_tokens=list(FAMILIES[family].token_ids(processor.tokenizer).image),
    )
    assert out.shape[0] == 2


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_same_seed_same_weights_and_they_survive_saving(family, tiny_dir):
    weights = build(family, seed=0)[0].state_dict()
    assert all(torch.equal(weights[k], v) for k, v in build(family, seed=0)[0].state_dict().items())
    other = build(family, seed=1)[0].state_dict()
    assert any(not torch.equal(weights[k], v) for k, v in other.items())
    loaded = load(tiny_dir(family), family)[0].state_dict()
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(weights[k], v) for k, v in loaded.items())


def test_prompt_words_are_real_tokens(tiny_dir):
    processor = AutoProcessor.from_pretrained(tiny_dir("llava"))
    tokenizer = processor.tokenizer
    ids = tokenizer("A man riding a horse on the beach.\nAnswer: 2", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids)[-4:] == ["\n", "answer", ":", "2"]
    assert tokenizer("zyzzyva", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    assert tokenizer.padding_side == "left"


@pytest.mark.parametrize("family", ["chameleon", "qwen2_vl"])
def test_auto_model_class_resolves(family, tiny_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir(family))
    assert type(model).__name__ == FAMILIES[family].model_class


def test_cli_writes_a_checkpoint_plain_transformers_loads(tmp_path):
    command = shutil.which("narrowgate", path=str(Path(sys.executable).parent))
    assert command, "the narrowgate console script is missing: pip install -e ."
    out = tmp_path / "D"
    result = subprocess.run(
        [command, "tiny", "chameleon", str(out)], check=False, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    code = (
        "import sys, transformers;"
        "transformers.AutoProcessor.from_pretrained(sys.argv[1]);"
        "print(type(transformers.ChameleonForConditionalGeneration.from_pretrained(sys.argv[1])).__name__)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(out)], check=False, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "ChameleonForConditionalGeneration"


def test_cli_rejects_an_unknown_family_listing_the_known_ones(tmp_path, capsys):
    assert cli.main(["tiny", "nosuch", str(tmp_path / "D")]) != 0
    error = capsys.readouterr().err
    assert "nosuch" in error and all(family in error for family in TINY_FAMILIES)
    assert not (tmp_path / "D").exists()
    assert cli.main(["tiny"]) != 0, "FAMILY and OUT_DIR are required unless --list"


def test_cli_lists_the_families_and_architectures(capsys):
    from narrowgate.tiny import TINY_ARCHITECTURES

    assert cli.main(["tiny", "--list"]) == 0
    assert capsys.readouterr().out.split() == [*TINY_FAMILIES, *TINY_ARCHITECTURES]
