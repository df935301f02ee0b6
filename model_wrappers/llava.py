"""LLaVA-1.5 (``llava-hf/llava-1.5-7b-hf``): the documented ``USER: <image>\\n{text} ASSISTANT:`` prompt.

The image is a run of ``<image>`` tokens with no end-of-image token, so the gate is the first token
after the run (here the newline).
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class LlavaModel(NarrowgateModel):
    family = "llava"
    prompt_template = "USER: {images}\n{text} ASSISTANT:"
