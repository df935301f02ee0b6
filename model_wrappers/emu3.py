"""Emu3 (``BAAI/Emu3-Chat-hf``): the understanding prompt of Emu3's own processor.

Emu3's understanding mode wraps the image and the request as
``You are a helpful assistant. USER: <image>{text} ASSISTANT:``. The processor expands ``<image>`` into
``<|image start|>`` h ``*`` w ``<|image token|>`` + the image rows + ``<|extra_201|>`` ``<|image end|>``;
both end tokens form the gate.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class Emu3Model(NarrowgateModel):
    family = "emu3"
    prompt_template = "You are a helpful assistant. USER: {images}{text} ASSISTANT:"
