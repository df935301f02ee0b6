"""From lmms-eval requests to model inputs: each request's images, the family's prompt around its text,
the processor call, and where every image and its gate sit (``interventions.find_layouts``), checked
against the images given.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmms_eval.api.instance import Instance
from PIL import Image

from interventions import FamilySpec, Layout, find_layouts


class NarrowgateInputError(ValueError):
    """A request the wrapper cannot run as asked (no image, malformed image span); names the document."""


def request_images(request: Instance, task_dict: dict, running: str) -> tuple[str, str, list]:
    """(where, example key, images) of a request; no image is an error naming the document.

    ``running`` says what would have run (``condition 'gate_ablated', model chameleon_gate_ablated``)."""
    doc_to_visual, doc_id, task, split = request.args[2:6]
    where = f"task {task!r} doc_id {doc_id}"
    key = f"{task}/{split}/{doc_id}"
    visuals = doc_to_visual(task_dict[task][split][doc_id]) if callable(doc_to_visual) else None
    visuals = [v for v in (visuals or []) if v is not None]
    if not visuals:
        raise NarrowgateInputError(
            f"{where}: the sample has no image; every narrowgate condition needs one "
            f"({running}). Fix the task's doc_to_visual or drop the document."
        )
    others = sorted({type(v).__name__ for v in visuals if not isinstance(v, Image.Image)})
    if others:
        raise NarrowgateInputError(f"{where}: narrowgate models take PIL images, got {', '.join(others)} (video or audio?)")
    return where, key, visuals


class Encoder:
    """A family's prompts and processor on one loaded checkpoint (``model_wrappers.loading.Checkpoint``)."""

    def __init__(self, spec: FamilySpec, checkpoint) -> None:
        self.spec = spec
        self.processor = checkpoint.processor
        self.tokenizer = checkpoint.tokenizer
        self.ids = spec.token_ids(self.tokenizer)
        self.device = checkpoint.device
        self.dtype = checkpoint.model.dtype
        self.processor_kwargs = dict(spec.processor_kwargs)

    def format_prompt(self, text: str, n_images: int) -> str:
        """The exact text given to the processor: the family's prompt around the task's text."""
        return self.spec.format_prompt(text, n_images)

    def encode(
        self, prompts: list[str], visuals: list[list], wheres: list[str], keys: list[str]
    ) -> tuple[dict[str, Any], tuple[Layout, ...]]:
        """Processor output on the model's device and the layout of every row (checked against the images).

        ``keys`` name the examples: per-example random choices (random_image_ablated, gate_randomized) are
        seeded by them, so they differ between documents even when the token ids are equal (image
        placeholders are the same for every image) and do not depend on batch composition.
        """
        images = [image for row in visuals for image in row]
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt", **self.processor_kwargs)
        inputs = {name: value.to(self.device) for name, value in inputs.items()}
        if self.spec.pixels_in_model_dtype:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        layouts = []
        for row, where in enumerate(wheres):
            try:
                (layout,) = find_layouts(inputs["input_ids"][row : row + 1], inputs["attention_mask"][row : row + 1], self.ids)
            except ValueError as error:
                raise NarrowgateInputError(f"{where}: malformed image span in the processed prompt: {error}") from error
            if len(layout.spans) != len(visuals[row]):
                raise NarrowgateInputError(
                    f"{where}: {len(visuals[row])} image(s) given but {len(layout.spans)} image span(s) in the processed "
                    f"prompt {prompts[row]!r}; the condition would not act on every image"
                )
            layouts.append(dataclasses.replace(layout, row=row, key=keys[row]))
        return inputs, tuple(layouts)
