"""Janus (``deepseek-community/Janus-Pro-1B``): the documented DeepSeek conversation format."""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class JanusModel(NarrowgateModel):
    family = "janus"
    prompt_format = PromptFormat("<|User|>: {images}\n{text}\n\n<|Assistant|>:")
