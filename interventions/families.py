"""Model families: which tokens open an image, fill it, and form its gate.

This is the one list of the declared families: what the mechanisms need to know about one (its
transformers class and config type, its image tokens) is its entry in ``FAMILIES``. Everything else is
named after it: the family's lmms-eval wrapper (``model_wrappers/<family>.py``: its documented prompt and
processor options), the registered ``<family>_<condition>`` model names (``model_wrappers.registry``) and
the tiny checkpoints (``narrowgate.tiny.families``, one builder named after each family). The ``auto`` family derives a FamilySpec from
any checkpoint instead (``interventions.generic``).

A family is described by token *strings* (as the family's processor writes them into the prompt);
ids are always resolved from the tokenizer at run time, because published ids differ between
checkpoint revisions.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    model_type: the ``model_type`` of the family's config.json, checked before any weights load.
    vision_model_type: the vision tower's ``model_type`` where it tells families of one ``model_type``
        apart (Pixtral's checkpoints are ``llava`` ones with a ``pixtral`` tower); None: any tower that
        no other family of the same ``model_type`` claims.
    """

    name: str
    model_class: str
    placeholder: str
    image_tokens: tuple[str, ...]
    start_tokens: tuple[str, ...] = ()
    gate_tokens: tuple[str, ...] = ()
    gate_is_text: bool = False
    model_type: str = ""
    vision_model_type: str | None = None
    def token_ids(self, tokenizer) -> FamilyIds:
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
        # facebook/chameleon-7b, -30b: the processor expands <image> into <racm3:break> + 1024 image tokens +
        # <eoss> (the gate).
        FamilySpec(
            name="chameleon",
            model_type="chameleon",
            model_class="ChameleonForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<racm3:break>",),
            gate_tokens=("<eoss>",),
        ),
        # BAAI/Emu3-Chat-hf: <image> expands into
        # <|image start|> h*w<|image token|> + the image rows + <|extra_201|><|image end|>; both end tokens are the gate.
        FamilySpec(
            name="emu3",
            model_type="emu3",
            model_class="Emu3ForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<|image start|>",),
            gate_tokens=("<|extra_201|>", "<|image end|>"),
        ),
        # llava-hf/llava-1.5-7b-hf: a run of <image> tokens with no end-of-image token, so the gate is the
        # first token after the run.
        FamilySpec(
            name="llava",
            model_type="llava",
            model_class="LlavaForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
        ),
        # llava-hf/llava-onevision-qwen2-7b-ov-hf: no end-of-image token; the authors gave the image its own
        # chat turn, so the turn's <|im_end|> follows the run and is the gate (docs/protocol.md §2). Declared,
        # so that a prompt that puts anything else after the image fails instead of moving the gate.
        FamilySpec(
            name="llava_onevision",
            model_type="llava_onevision",
            model_class="LlavaOnevisionForConditionalGeneration",
            placeholder="<image><|im_end|>",
            image_tokens=("<image>",),
            gate_tokens=("<|im_end|>",),
            gate_is_text=True,
        ),
        # mistral-community/pixtral-12b: [IMG] expands into rows of [IMG] ending in [IMG_BREAK], the last row
        # ending in [IMG_END] (the gate).
        FamilySpec(
            name="pixtral",
            model_type="llava",
            vision_model_type="pixtral",
            model_class="LlavaForConditionalGeneration",
            placeholder="[IMG]",
            image_tokens=("[IMG]", "[IMG_BREAK]"),
            gate_tokens=("[IMG_END]",),
        ),
        # deepseek-community/Janus-Pro-1B: the placeholder expands into <begin_of_image> + 576 placeholders +
        # <end_of_image> (the gate).
        FamilySpec(
            name="janus",
            model_type="janus",
            model_class="JanusForConditionalGeneration",
            placeholder="<image_placeholder>",
            image_tokens=("<image_placeholder>",),
            start_tokens=("<begin_of_image>",),
            gate_tokens=("<end_of_image>",),
        ),
        # Qwen/Qwen2-VL-7B-Instruct: <|vision_start|> + <|image_pad|> x N + <|vision_end|> (the gate).
        FamilySpec(
            name="qwen2_vl",
            model_type="qwen2_vl",
            model_class="Qwen2VLForConditionalGeneration",
            placeholder="<|vision_start|><|image_pad|><|vision_end|>",
            image_tokens=("<|image_pad|>",),
            start_tokens=("<|vision_start|>",),
            gate_tokens=("<|vision_end|>",),
        ),
    )
}


def families_of(config: dict) -> list[str]:
    """The declared families a checkpoint's config.json (as a dict) belongs to (usually one, or none)."""
    vision = (config.get("vision_config") or {}).get("model_type")
    candidates = [spec for spec in FAMILIES.values() if spec.model_type == config.get("model_type")]
    exact = [spec.name for spec in candidates if spec.vision_model_type is not None and spec.vision_model_type == vision]
    return exact or [spec.name for spec in candidates if spec.vision_model_type is None]


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
