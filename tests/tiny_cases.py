"""Tiny checkpoints loaded once per test session, with the prompts, inputs and greedy generation that
the intervention tests share (a helper module, not a test file)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from interventions import (
    CONDITIONS,
    Condition,
    FamilyIds,
    FamilySpec,
    family_spec,
    find_layouts,
    generate_each,
    make_condition,
)
from narrowgate.tiny import TINY_FAMILIES
from narrowgate.tiny import TINY_ARCHITECTURES

# Every tiny checkpoint the invariant tests run on: the declared families and the auto family's architectures.
TINY_CASES: tuple[str, ...] = (*TINY_FAMILIES, *TINY_ARCHITECTURES)

# Row 0 opens with the image, row 1 has text before it and is shorter, so a batch is left-padded and
# its rows' gates sit at different positions.
PROMPTS = ("{image}what color is the shape ?", "describe {image} in one word")

_LOADED: dict[tuple[str, torch.dtype], Tiny] = {}

# (condition, knockout) for every condition: both semantics where the condition cuts attention edges.
CONDITION_CASES = [
    (name, knockout)
    for name, definition in CONDITIONS.items()
    for knockout in (("zero", "mask") if "knockout" in definition.options else ("zero",))
]
# The flow the invariant tests run: a query range inside the prompt (question), the last token, and
# generated tokens only.
FLOW_CUT = "image>question+image>last+gate>generated"


def case_condition(name: str, knockout: str = "zero", **options) -> Condition:
    """A condition as the invariant tests run it: 3 random image tokens, ``FLOW_CUT`` for a flow."""
    if "cut" in CONDITIONS[name].options:
        options.setdefault("cut", FLOW_CUT)
    return make_condition(name, knockout=knockout, **{"k": 3, **options})


@dataclass
class Tiny:
    family: str
    model: Any
    processor: Any
    ids: FamilyIds
    spec: FamilySpec

    def inputs(self, images: list, prompts: tuple[str, ...] = PROMPTS) -> dict:
        """One image (or a list of images) per prompt, left-padded; pixel values in the model's dtype
        (Chameleon needs it)."""
        placeholder = self.spec.placeholder
        texts = [prompt.format(image=placeholder) for prompt in prompts]
        inputs = dict(self.processor(text=texts, images=images, padding=True, return_tensors="pt"))
        if torch.is_floating_point(inputs["pixel_values"]):
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def layouts(self, inputs: dict):
        return find_layouts(inputs["input_ids"], inputs["attention_mask"], self.ids)

    @torch.no_grad()
    def logits(self, inputs: dict, **kwargs) -> torch.Tensor:
        return self.model(**inputs, **kwargs).logits

    @torch.no_grad()
    def generate(
        self, inputs: dict, new_tokens: int = 4, conditions=None, layouts=None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy generation of exactly ``new_tokens`` tokens: (tokens (B, n), raw logits (B, n, V)).
        Image, start and gate tokens are suppressed: a random model may emit them, and a later full
        forward over prompt + continuation would then see a malformed image. With ``conditions`` (and
        the batch's ``layouts``): ``generate_each`` under them, C x B rows."""
        run = self.model.generate if conditions is None else partial(generate_each, self.model, conditions, layouts, inputs)
        out = run(
            **({} if conditions else inputs),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            suppress_tokens=list(self.ids.image + self.ids.start + self.ids.gate),
            pad_token_id=self.processor.tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
            **kwargs,
        )
        return out.sequences[:, -new_tokens:], torch.stack(out.logits, dim=1)

    @staticmethod
    def extend(inputs: dict, tokens: torch.Tensor) -> dict:
        """The inputs of a full forward over the prompt plus ``tokens`` (B, t) of continuation."""
        extended = dict(inputs)
        extended["input_ids"] = torch.cat([inputs["input_ids"], tokens], dim=1)
        extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(tokens)], dim=1)
        if "mm_token_type_ids" in inputs:  # Qwen2-VL: continuation tokens are text
            extended["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(tokens)], dim=1)
        return extended


def spec_of(family: str, config, processor) -> FamilySpec:
    """The declared family's spec, or the one the auto family derives for an architecture (probe-checked)."""
    if family in TINY_FAMILIES:
        return family_spec(family)
    from PIL import Image

    from interventions.generic import check_probe, derive_spec

    return check_probe(derive_spec(family, config, processor), processor, Image.new("RGB", (32, 32)))


def load(tiny_dir, family: str, dtype: torch.dtype = torch.float32) -> Tiny:
    """The tiny checkpoint of ``family`` (a family or an auto-family architecture, written by the
    ``tiny_dir`` fixture), loaded once per session."""
    key = (family, dtype)
    if key not in _LOADED:
        import transformers

        path = tiny_dir(family)
        processor = transformers.AutoProcessor.from_pretrained(path)
        spec = spec_of(family, transformers.AutoConfig.from_pretrained(path), processor)
        model = getattr(transformers, spec.model_class).from_pretrained(path, dtype=dtype).eval()
        _LOADED[key] = Tiny(family, model, processor, spec.token_ids(processor.tokenizer), spec)
    return _LOADED[key]


def same_size_pair(images: list) -> list:
    """Two images of the same size and different content, so that their layouts are identical."""
    return [images[0], images[3].resize(images[0].size)]
