"""Pixtral (``mistral-community/pixtral-12b``): the Mistral instruction format, image first.

``[INST][IMG]\\n{text}[/INST]``; the processor expands ``[IMG]`` into rows of ``[IMG]`` ending in
``[IMG_BREAK]``, the last row ending in ``[IMG_END]`` (the gate). The tokenizer adds the BOS token.
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class PixtralModel(NarrowgateModel):
    family = "pixtral"
    prompt_template = "[INST]{images}\n{text}[/INST]"
