"""Emu3 (``BAAI/Emu3-Chat-hf``): the understanding prompt of Emu3's own processor."""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class Emu3Model(NarrowgateModel):
    family = "emu3"
    prompt_format = PromptFormat("You are a helpful assistant. USER: {images}{text} ASSISTANT:")
