"""Janus / Janus-Pro (``deepseek-community/Janus-Pro-1B``): the documented DeepSeek conversation format.

``<|User|>: <image_placeholder>\\n{text}\\n\\n<|Assistant|>:``; the processor expands the placeholder
into ``<begin_of_image>`` + 576 placeholders + ``<end_of_image>`` (the gate).
"""

from __future__ import annotations

from model_wrappers.base import NarrowgateModel


class JanusModel(NarrowgateModel):
    family = "janus"
    prompt_template = "<|User|>: {images}\n{text}\n\n<|Assistant|>:"
