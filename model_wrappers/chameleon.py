"""Chameleon (``facebook/chameleon-7b``, ``facebook/chameleon-30b``) in the paper's text-completion mode.

The authors prompted Chameleon without a chat template: ``<image>{request}``, with the processor's
``return_for_text_completion=True`` (no trailing sep token), docs/protocol.md §4; the completion cue
(`` Answer:`` after a short-answer request) is the task's per-model prompt variant
(``narrowgate_tasks/_prompt_variants_vqa.yaml``). Chameleon's processor returns float32 pixels that the
model does not cast itself.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class ChameleonModel(NarrowgateModel):
    family = "chameleon"
    prompt_format = PromptFormat(
        "{images}{text}", processor_kwargs=(("return_for_text_completion", True),), pixels_in_model_dtype=True
    )
