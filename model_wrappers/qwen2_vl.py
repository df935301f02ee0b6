"""Qwen2-VL (``Qwen/Qwen2-VL-7B-Instruct``): the model's ChatML template with its default system prompt.

The image is ``<|vision_start|>`` + ``<|image_pad|>`` x N + ``<|vision_end|>`` (the gate); the processor's
extra outputs (image grid, token types for M-RoPE) go to the model unchanged.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class Qwen2VLModel(NarrowgateModel):
    family = "qwen2_vl"
    prompt_template = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"
    )
