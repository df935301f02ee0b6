"""Qwen2-VL (``Qwen/Qwen2-VL-7B-Instruct``): its ChatML template with the default system prompt.

The processor's extra outputs (image grid, token types for M-RoPE) go to the model unchanged.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class Qwen2VLModel(NarrowgateModel):
    family = "qwen2_vl"
    prompt_format = PromptFormat(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"
    )
