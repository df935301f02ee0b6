"""Pixtral (``mistral-community/pixtral-12b``): the Mistral instruction format, image first (the tokenizer adds the BOS)."""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class PixtralModel(NarrowgateModel):
    family = "pixtral"
    prompt_format = PromptFormat("[INST]{images}\n{text}[/INST]")
