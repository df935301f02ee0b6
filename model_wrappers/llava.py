"""LLaVA-1.5 (``llava-hf/llava-1.5-7b-hf``): its documented prompt; the gate is the newline after the image run."""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class LlavaModel(NarrowgateModel):
    family = "llava"
    prompt_format = PromptFormat("USER: {images}\n{text} ASSISTANT:")
