"""Model families: which tokens open an image, fill it, and form its gate, and the prompt around it.

This is the one list of the declared families: everything narrowgate knows about one (its transformers
class, image tokens, prompt format, processor options) is its entry in ``FAMILIES``; the lmms-eval
model names (``model_wrappers.registry``) and the tiny checkpoints (``narrowgate.tiny.families``, one
builder named after each family) are derived from it. The ``auto`` family derives a FamilySpec from
any checkpoint instead (``interventions.generic``).

A family is described by token *strings* (as the family's processor writes them into the prompt);
ids are always resolved from the tokenizer at run time, because published ids differ between
checkpoint revisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilySpec:
    """The image-token structure of one family's prompts.

    image_tokens: tokens of the image run (placeholders; Pixtral's row breaks count as image tokens).
    start_tokens: tokens that open an image span; the tokens between the opener and the run (Emu3's
        ``h*w<|image token|>`` header) belong to the start. Empty when the family has no opener.
    gate_tokens: the tokens right after the run that form the gate, in order; any other token there
        is an error. Empty means the gate is whatever token follows the run (LLaVA-1.5).
    gate_is_text: the gate tokens are ordinary text tokens that also occur away from images
        (LLaVA-OneVision's ``<|im_end|>`` closes every chat turn), so one elsewhere is not an error.
    placeholder: what a prompt writes for one image (with the gate, where the prompt supplies it); the
        family's processor expands it into the span.
    prompt: the exact text given to the processor, around the task's request (``{text}``) and the
        images' placeholders (``{images}``): the family's documented prompt format.
    processor_kwargs: extra keyword arguments of every processor call, as (name, value) pairs.
    pixels_in_model_dtype: cast the processor's pixel values to the model's dtype (Chameleon's processor
        returns float32 pixels that the model does not cast itself).
    """

    name: str
    model_class: str
    placeholder: str
    image_tokens: tuple[str, ...]
    start_tokens: tuple[str, ...] = ()
    gate_tokens: tuple[str, ...] = ()
    gate_is_text: bool = False
    prompt: str = "{images}{text}"
    processor_kwargs: tuple[tuple[str, Any], ...] = ()
    pixels_in_model_dtype: bool = False

    def format_prompt(self, text: str, n_images: int) -> str:
        """The exact text given to the processor: the family's prompt around ``text`` and ``n_images`` images."""
        return self.prompt.format(images=self.placeholder * n_images, text=text)

    def token_ids(self, tokenizer) -> "FamilyIds":
        """Resolve the spec's strings to ids with ``tokenizer``; an unknown token is an error."""

        def resolve(tokens: tuple[str, ...]) -> tuple[int, ...]:
            ids = []
            for token in tokens:
                token_id = tokenizer.convert_tokens_to_ids(token)
                if token_id is None or token_id == tokenizer.unk_token_id:
                    raise ValueError(
                        f"family {self.name!r}: the tokenizer has no token {token!r}; is this checkpoint "
                        f"really a {self.name} model?"
                    )
                ids.append(token_id)
            return tuple(ids)

        return FamilyIds(
            family=self.name,
            image=resolve(self.image_tokens),
            start=resolve(self.start_tokens),
            gate=resolve(self.gate_tokens),
            gate_is_text=self.gate_is_text,
        )


@dataclass(frozen=True)
class FamilyIds:
    """A FamilySpec resolved against one tokenizer."""

    family: str
    image: tuple[int, ...]
    start: tuple[int, ...]
    gate: tuple[int, ...]
    gate_is_text: bool = False


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        # facebook/chameleon-7b, -30b, in the paper's text-completion mode: no chat template, the processor's
        # return_for_text_completion (no trailing sep token); the answer cue " Answer:" after a short-answer
        # request is the task's per-model prompt variant (narrowgate_tasks/_template_vqa.yaml). The processor
        # expands <image> into <racm3:break> + 1024 image tokens + <eoss> (the gate).
        FamilySpec(
            name="chameleon",
            model_class="ChameleonForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<racm3:break>",),
            gate_tokens=("<eoss>",),
            processor_kwargs=(("return_for_text_completion", True),),
            pixels_in_model_dtype=True,
        ),
        # BAAI/Emu3-Chat-hf: the understanding prompt of Emu3's own processor. <image> expands into
        # <|image start|> h*w<|image token|> + the image rows + <|extra_201|><|image end|>; both end tokens are the gate.
        FamilySpec(
            name="emu3",
            model_class="Emu3ForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<|image start|>",),
            gate_tokens=("<|extra_201|>", "<|image end|>"),
            prompt="You are a helpful assistant. USER: {images}{text} ASSISTANT:",
        ),
        # llava-hf/llava-1.5-7b-hf, its documented prompt: a run of <image> tokens with no end-of-image token,
        # so the gate is the first token after the run (the newline).
        FamilySpec(
            name="llava",
            model_class="LlavaForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            prompt="USER: {images}\n{text} ASSISTANT:",
        ),
        # llava-hf/llava-onevision-qwen2-7b-ov-hf, ChatML. No end-of-image token: the authors gave the image its
        # own chat turn, so the turn's <|im_end|> follows the run and is the gate (docs/protocol.md §2); the
        # question follows in the next user turn. Declared, so that a prompt that puts anything else after the
        # image fails instead of moving the gate.
        FamilySpec(
            name="llava_onevision",
            model_class="LlavaOnevisionForConditionalGeneration",
            placeholder="<image><|im_end|>",
            image_tokens=("<image>",),
            gate_tokens=("<|im_end|>",),
            gate_is_text=True,
            prompt="<|im_start|>user {images}\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n",
        ),
        # mistral-community/pixtral-12b, the Mistral instruction format, image first: [IMG] expands into rows of
        # [IMG] ending in [IMG_BREAK], the last row ending in [IMG_END] (the gate). The tokenizer adds the BOS.
        FamilySpec(
            name="pixtral",
            model_class="LlavaForConditionalGeneration",
            placeholder="[IMG]",
            image_tokens=("[IMG]", "[IMG_BREAK]"),
            gate_tokens=("[IMG_END]",),
            prompt="[INST]{images}\n{text}[/INST]",
        ),
        # deepseek-community/Janus-Pro-1B, the documented DeepSeek conversation format: the placeholder expands
        # into <begin_of_image> + 576 placeholders + <end_of_image> (the gate).
        FamilySpec(
            name="janus",
            model_class="JanusForConditionalGeneration",
            placeholder="<image_placeholder>",
            image_tokens=("<image_placeholder>",),
            start_tokens=("<begin_of_image>",),
            gate_tokens=("<end_of_image>",),
            prompt="<|User|>: {images}\n{text}\n\n<|Assistant|>:",
        ),
        # Qwen/Qwen2-VL-7B-Instruct, its ChatML template with the default system prompt; the processor's extra
        # outputs (image grid, token types for M-RoPE) go to the model unchanged.
        FamilySpec(
            name="qwen2_vl",
            model_class="Qwen2VLForConditionalGeneration",
            placeholder="<|vision_start|><|image_pad|><|vision_end|>",
            image_tokens=("<|image_pad|>",),
            start_tokens=("<|vision_start|>",),
            gate_tokens=("<|vision_end|>",),
            prompt=(
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"
            ),
        ),
    )
}


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
