"""LLaVA-OneVision (``llava-hf/llava-onevision-qwen2-7b-ov-hf``), ChatML, as the authors prompted it.

The image gets its own user turn, so the turn's ``<|im_end|>`` (part of the family's placeholder) follows
the image run and is the gate (docs/protocol.md §2); the question follows in the next user turn.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import PromptFormat


class LlavaOnevisionModel(NarrowgateModel):
    family = "llava_onevision"
    prompt_format = PromptFormat("<|im_start|>user {images}\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")
