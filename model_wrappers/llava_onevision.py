"""LLaVA-OneVision (``llava-hf/llava-onevision-qwen2-7b-ov-hf``): ChatML with the image in its own turn.

The model has no end-of-image token. The authors wrapped the image in ``<|im_start|>`` ... ``<|im_end|>``
so that ``<|im_end|>``, the first token after the image run, is the gate (docs/protocol.md §2); the question
follows in the next user turn. The family's placeholder is ``<image><|im_end|>`` and the gate token is
declared in ``interventions.families``: a template that put anything else after the image would fail.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class LlavaOnevisionModel(NarrowgateModel):
    family = "llava_onevision"
    prompt_template = "<|im_start|>user {images}\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
