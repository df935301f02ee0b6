"""The generic family ``auto`` on tiny checkpoints of four transformers architectures.

The engine invariants (exact cuts vs the eager reference, fast = reference, cached = recomputed,
batch = rows alone, image invariance under ``mask``) run on these architectures through
``tiny_cases.TINY_CASES`` in test_knockout / test_intervene_generate / test_patching / test_layout.
Here: the derived image span and gate are the architecture's own; missing, ambiguous or non-run
layouts are errors naming what to declare; the lmms-eval model ``auto_<condition>`` equals the engine's
own generate on the prompt it logged, in process for every architecture and once through the CLI.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from test_wrappers import BIN, SMOKE, Engine, assert_equals_engine, evaluate, raw_response, read_samples, run
from tiny_cases import load

from interventions import FamilySpec, family_spec, make_condition
from interventions.generic import check_probe, derive_spec
from narrowgate.tiny import TINY_FAMILIES
from narrowgate.tiny import TINY_ARCHITECTURES

# architecture -> (tokens of the image run, start tokens, gate tokens) in the chat prompt's input_ids;
# None: the gate is the first token after the run, here the newline the chat template writes.
EXPECTED = {
    "mistral3": ({"[IMG]", "[IMG_BREAK]"}, (), ("[IMG_END]",)),
    "internvl": ({"<IMG_CONTEXT>"}, ("<img>",), ("</img>",)),
    "qwen2_5_vl": ({"<|image_pad|>"}, ("<|vision_start|>",), ("<|vision_end|>",)),
    "llava_next": ({"<image>"}, (), None),
}


def stub_config(**attributes) -> SimpleNamespace:
    """A config with only ``attributes`` (and a text config without sliding windows)."""
    return SimpleNamespace(get_text_config=SimpleNamespace, **attributes)


class AutoEngine(Engine):
    """test_wrappers' engine (plain model, intervene, generate) on a tiny auto-family checkpoint."""

    def __init__(self, tiny):
        self.model, self.processor, self.ids, self.processor_kwargs = tiny.model, tiny.processor, tiny.ids, {}


def test_every_architecture_has_an_expected_layout():
    assert set(EXPECTED) == set(TINY_ARCHITECTURES)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_derived_span_and_gate_on_the_chat_prompt(tiny_dir, images, arch):
    import model_wrappers

    lm = model_wrappers.load_model("auto", str(tiny_dir(arch)))
    image, start, gate = EXPECTED[arch]
    assert (set(lm.spec.image_tokens), lm.spec.start_tokens, lm.spec.gate_tokens) == (image, start, gate or ())
    prompt = lm.format_prompt("what color is the shape ?", 1)
    inputs, (layout,) = lm.encoder.encode([prompt], [[images[1]]], ["doc 0"], ["key 0"])
    tokens = lm.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    (span,) = layout.spans
    assert {tokens[p] for p in span.image} == image and len(span.image) > 4
    assert tuple(tokens[p] for p in span.start) == start
    assert tuple(tokens[p] for p in span.gate) == (gate or ("\n",))
    assert not any(token in image for token in tokens[: span.image.start] + tokens[span.image.stop :])
    assert prompt.count("<s>") == 0, "the BOS the template writes is left to the tokenizer"


def test_missing_and_ambiguous_tokens_name_what_to_declare(tiny_dir):
    tiny = load(tiny_dir, "mistral3")
    tokenizer, config = tiny.processor.tokenizer, tiny.model.config
    bare = SimpleNamespace(tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"no image token found .*declare it with image_token=TOKEN"):
        derive_spec("x", stub_config(model_type="mistral3"), bare)
    end = tokenizer.convert_tokens_to_ids("[/INST]")
    two_ends = SimpleNamespace(tokenizer=tokenizer, image_token="[IMG]", image_end_token="[IMG_END]")
    with pytest.raises(
        ValueError,
        match=r"several candidate end-of-image tokens: '\[IMG_END\]' \(processor.image_end_token\), "
        r"'\[/INST\]' \(config.eoi_token_id\); declare the right one with gate_token=",
    ):
        derive_spec("x", stub_config(model_type="mistral3", eoi_token_id=end), two_ends)
    declared = derive_spec("x", stub_config(model_type="mistral3", eoi_token_id=end), two_ends, gate_token="[IMG_END]")
    assert declared.gate_tokens == ("[IMG_END]",) and declared.model_class == "Mistral3ForConditionalGeneration"
    with pytest.raises(ValueError, match="has no token '<eoi>'"):
        derive_spec("x", config, tiny.processor, gate_token="<eoi>")
    with pytest.raises(ValueError, match="would both open/close and fill the image"):
        derive_spec("x", config, tiny.processor, gate_token="[IMG_BREAK]")


def test_images_that_are_not_one_run_are_refused(tiny_dir, images):
    tiny = load(tiny_dir, "mistral3")
    # Without its row breaks, a Pixtral image is several runs, the first followed by a break, not its gate.
    rows = FamilySpec("x", "Mistral3ForConditionalGeneration", "[IMG]", ("[IMG]",), (), ("[IMG_END]",))
    with pytest.raises(
        ValueError,
        match=r"does not match what the processor writes .*not followed by its gate.*"
        r"Declare image_token=, start_token= and gate_token=",
    ):
        check_probe(rows, tiny.processor, images[0])
    tiles = FamilySpec("x", "Mistral3ForConditionalGeneration", "[IMG]", ("[IMG]",), (), ())
    with pytest.raises(ValueError, match=r"one image became \d+ runs of image tokens"):
        check_probe(tiles, tiny.processor, images[0])
    with pytest.raises(ValueError, match="model type 'llama' is not an image-text-to-text model"):
        derive_spec("x", stub_config(model_type="llama", image_token_id=3), tiny.processor)


def test_attention_the_engine_cannot_cut_exactly_is_refused(tiny_dir):
    from transformers import Gemma3Config, PaliGemmaConfig

    processor = load(tiny_dir, "mistral3").processor
    with pytest.raises(
        ValueError, match="Gemma 3's image tokens attend to each other bidirectionally; .*not supported"
    ):
        derive_spec("x", Gemma3Config(), processor)
    with pytest.raises(ValueError, match="PaliGemma's image and prompt prefix attend to each other bidirectionally"):
        derive_spec("x", PaliGemmaConfig(), processor)
    config = load(tiny_dir, "mistral3").model.config
    sliding = SimpleNamespace(
        model_type="mistral3",
        get_text_config=lambda: SimpleNamespace(layer_types=["sliding_attention", "full_attention"]),
    )
    with pytest.raises(ValueError, match="mistral3: 1 of 2 language-model layers use sliding-window attention"):
        derive_spec("x", sliding, processor)
    assert derive_spec("x", config, processor).gate_tokens == ("[IMG_END]",)


def test_wrong_declaration_fails_at_load(tiny_dir):
    from model_wrappers.registry import model_class

    with pytest.raises(
        ValueError, match=r"auto_gate_only \(.*\): internvl: .*does not match what the processor writes"
    ):
        model_class("auto_gate_only")(pretrained=str(tiny_dir("internvl")), gate_token="\n")


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_auto_model_equals_the_engine(tiny_dir, arch):
    """In process, batch size 2 (left padding): image_ablated and gate_ablated equal the engine; the image
    changes some baseline output, so the comparison can fail."""
    import model_wrappers

    lm = model_wrappers.load_model("auto", str(tiny_dir(arch)), batch_size=2)
    engine = AutoEngine(load(tiny_dir, arch))
    outputs = {}
    for name in ("image_ablated", "gate_ablated", "baseline"):
        lm.set_condition(make_condition(name))
        samples = evaluate(lm)
        assert_equals_engine(engine, samples, name)
        assert all(sample["narrowgate"]["model"] == "auto" for sample in samples.values())
        outputs[name] = [raw_response(samples[d]) for d in sorted(samples)]
    assert outputs["image_ablated"] != outputs["baseline"] or outputs["gate_ablated"] != outputs["baseline"]


def lmms_eval_cli(model: str, model_args: str, output: Path, limit: int = 2) -> dict[int, dict]:
    """``lmms_eval --model MODEL --model_args ARGS`` on the smoke task; the samples by doc id."""
    command = [
        str(BIN / "lmms_eval"),
        "--model", model,
        "--model_args", model_args,
        "--tasks", SMOKE,
        "--limit", str(limit),
        "--output_path", str(output),
        "--log_samples",
    ]  # fmt: skip
    result = run(command, cwd=output)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return read_samples(output, SMOKE)


def test_cli_runs_the_auto_family(tiny_dir, tmp_path):
    samples = lmms_eval_cli("auto_gate_only", f"pretrained={tiny_dir('qwen2_5_vl')},layers=1", tmp_path)
    assert all(sample["narrowgate"]["layers"] == [1] for sample in samples.values())
    assert_equals_engine(AutoEngine(load(tiny_dir, "qwen2_5_vl")), samples, "gate_only", limit=2)


def test_grids_take_the_auto_family(tmp_path):
    from narrowgate.grid import ConfigError, load_config, parse_config

    config = load_config("configs/open_models.yaml")
    assert {model.family for model in config.models} >= {"auto", "chameleon", "llava"}
    entry = {"tasks": [SMOKE], "conditions": ["baseline"], "models": [{"name": "m", "family": "auto", "tiny": True}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.tiny: .*`narrowgate tiny ARCHITECTURE DIR`"):
        parse_config(entry, tmp_path / "grid.yaml")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_derived_equals_declared_on_the_seven_families(tiny_dir, images, family):
    """What the generic family derives for the paper's checkpoints is their declared layout; Emu3's
    two-token gate is not derivable, is refused, and runs once declared; LLaVA-OneVision's gate comes
    from the wrapper's template and is the same once declared."""
    tiny = load(tiny_dir, family)
    declared = family_spec(family)

    def derived(**declarations):
        spec = derive_spec(family, tiny.model.config, tiny.processor, **declarations)
        return check_probe(spec, tiny.processor, images[0])

    if family == "emu3":
        with pytest.raises(
            ValueError, match=r"not followed by its gate .*Declare image_token=, start_token= and gate_token="
        ):
            derived()
        spec = derived(gate_token="<|extra_201|>+<|image end|>")
    elif family == "llava_onevision":
        # The gate is the wrapper's choice (the image in its own turn, closed by <|im_end|>): declared, not derived.
        assert derived().gate_tokens == ()
        spec = derived(gate_token="<|im_end|>")
    else:
        spec = derived()
    assert (set(spec.image_tokens), spec.start_tokens, spec.gate_tokens) == (
        set(declared.image_tokens),
        declared.start_tokens,
        declared.gate_tokens,
    )
    assert spec.model_class == declared.model_class
