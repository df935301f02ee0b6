"""Chameleon (``facebook/chameleon-7b``, ``facebook/chameleon-30b``) in the paper's text-completion mode.

The authors prompted Chameleon without a chat template: ``<image>{request}`` plus the completion cue
of ``narrowgate_tasks.prompts.completion_suffix`` (`` Answer:`` after a short-answer request), with
the processor's ``return_for_text_completion=True`` (no trailing sep token), docs/protocol.md §4.
The processor expands ``<image>`` into ``<racm3:break>`` + 1024 image tokens + ``<eoss>`` (the gate). Chameleon's processor
returns float32 pixels that the model does not cast itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from model_wrappers.base import NarrowgateModel
from narrowgate_tasks.prompts import completion_suffix


class ChameleonModel(NarrowgateModel):
    family = "chameleon"
    prompt_template = "{images}{text}"
    processor_kwargs: ClassVar[dict[str, Any]] = {"return_for_text_completion": True}

    def format_prompt(self, text: str, n_images: int) -> str:
        return super().format_prompt(text + completion_suffix(text), n_images)

    def prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs
