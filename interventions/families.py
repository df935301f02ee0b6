"""Model families: which tokens open an image, fill it, and form its gate.

A family is described by token *strings* (as the family's processor writes them into the prompt);
ids are always resolved from the tokenizer at run time, because published ids differ between
checkpoint revisions. Every other part of narrowgate (tiny checkpoints, layouts, wrappers) reads
the family's structure from here and nowhere else.
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
    """

    name: str
    model_class: str
    placeholder: str
    image_tokens: tuple[str, ...]
    start_tokens: tuple[str, ...] = ()
    gate_tokens: tuple[str, ...] = ()
    gate_is_text: bool = False

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
        FamilySpec(
            name="chameleon",
            model_class="ChameleonForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<racm3:break>",),
            gate_tokens=("<eoss>",),
        ),
        FamilySpec(
            name="emu3",
            model_class="Emu3ForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
            start_tokens=("<|image start|>",),
            gate_tokens=("<|extra_201|>", "<|image end|>"),
        ),
        FamilySpec(
            name="llava",
            model_class="LlavaForConditionalGeneration",
            placeholder="<image>",
            image_tokens=("<image>",),
        ),
        # No end-of-image token: the authors gave the image its own chat turn, so the turn's <|im_end|>
        # follows the run and is the gate (docs/protocol.md §2). Declared, so that a prompt that puts anything
        # else after the image fails instead of moving the gate.
        FamilySpec(
            name="llava_onevision",
            model_class="LlavaOnevisionForConditionalGeneration",
            placeholder="<image><|im_end|>",
            image_tokens=("<image>",),
            gate_tokens=("<|im_end|>",),
            gate_is_text=True,
        ),
        FamilySpec(
            name="pixtral",
            model_class="LlavaForConditionalGeneration",
            placeholder="[IMG]",
            image_tokens=("[IMG]", "[IMG_BREAK]"),
            gate_tokens=("[IMG_END]",),
        ),
        FamilySpec(
            name="janus",
            model_class="JanusForConditionalGeneration",
            placeholder="<image_placeholder>",
            image_tokens=("<image_placeholder>",),
            start_tokens=("<begin_of_image>",),
            gate_tokens=("<end_of_image>",),
        ),
        FamilySpec(
            name="qwen2_vl",
            model_class="Qwen2VLForConditionalGeneration",
            placeholder="<|vision_start|><|image_pad|><|vision_end|>",
            image_tokens=("<|image_pad|>",),
            start_tokens=("<|vision_start|>",),
            gate_tokens=("<|vision_end|>",),
        ),
    )
}


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(sorted(FAMILIES))}") from None
