"""Tiny checkpoints of transformers architectures served by the generic ``auto`` family.

Same recipe as the declared families' (``narrowgate.tiny.families``: word-level tokenizer, hidden size 64, 2 GQA
layers, at most 64 image tokens), plus a chat template shaped like the published checkpoint's, since
the ``auto`` family builds its prompts from the processor's chat template. The four architectures lay
images out differently: Mistral 3 in Pixtral rows (``[IMG]``xw ``[IMG_BREAK]``, ``[IMG_END]``), InternVL
between ``<img>`` and ``</img>``, Qwen2.5-VL between vision start/end tokens that only the chat template
writes (M-RoPE), LLaVA-NeXT as an anyres run with no end token (the gate is the first token after it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from narrowgate.tiny.sizes import TEXT, VIT, clip_vision, text_config
from narrowgate.tiny.tokenizer import LLAMA_SPECIAL, QWEN_CHAT, QWEN_SPECIAL, word_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, ProcessorMixin


def _chat(user: str, image: str, assistant: str, system: str = "") -> str:
    """A Jinja chat template: ``system`` (Jinja too), then each user turn as ``user`` around its images and text."""
    return (
        system
        + "{% for message in messages %}{% if message['role'] == 'user' %}"
        + user.replace(
            "{content}",
            "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
            + image
            + "{% else %}{{ item['text'] }}{% endif %}{% endfor %}",
        )
        + "{% endif %}{% endfor %}{% if add_generation_prompt %}"
        + assistant
        + "{% endif %}"
    )


CHATML = {"user": "<|im_start|>user\n{content}<|im_end|>\n", "assistant": "<|im_start|>assistant\n"}


def _mistral3() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """Rows of ``[IMG]``xw ``[IMG_BREAK]``, the last ending ``[IMG_END]``: 4-px patches merged 2x2 on images
    of at most 32 px (w, h <= 4)."""
    from transformers import Mistral3Config, PixtralImageProcessor, PixtralProcessor

    tokenizer = word_tokenizer(
        LLAMA_SPECIAL, added=("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"), add_bos=True
    )
    size, patch = 32, 4
    image_processor = PixtralImageProcessor(size={"longest_edge": size}, patch_size={"height": patch, "width": patch})
    processor = PixtralProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        spatial_merge_size=2,
        chat_template=_chat("[INST]{content}[/INST]", "[IMG]", "", system="{{ bos_token }}"),
    )
    config = Mistral3Config(
        text_config={"model_type": "mistral", **text_config(tokenizer)},
        vision_config={"model_type": "pixtral", "image_size": size, "patch_size": patch, "head_dim": 16, **VIT},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        tie_word_embeddings=False,  # tied, a random model repeats its last input token (a special one)
    )
    return config, processor


def _internvl() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<img>`` ``<IMG_CONTEXT>``x4 per 16-px tile ``</img>``: an InternViT on 4-px patches, pixel-shuffled
    by 2, Qwen2 text model (InternVL3)."""
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLProcessor, InternVLVideoProcessor

    tokenizer = word_tokenizer(
        QWEN_SPECIAL,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        added=QWEN_CHAT,
    )
    size, patch = 16, 4
    per_tile = (size // patch) ** 2 // 4
    image_processor = GotOcr2ImageProcessor(size={"height": size, "width": size}, max_patches=2)
    video_processor = InternVLVideoProcessor(size={"height": size, "width": size})
    processor = InternVLProcessor(
        image_processor,
        tokenizer,
        video_processor,
        image_seq_length=per_tile,
        chat_template=_chat(CHATML["user"], "<IMG_CONTEXT>\n", CHATML["assistant"]),
    )
    config = InternVLConfig(
        text_config={"model_type": "qwen2", **text_config(tokenizer)},
        vision_config={"image_size": size, "patch_size": patch, **VIT},
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=per_tile,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    return config, processor


def _qwen2_5_vl() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<|vision_start|>`` ``<|image_pad|>``xN ``<|vision_end|>`` (start and end written by the chat template);
    window attention in the vision tower, images of 16..32 px, N <= 16."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = word_tokenizer(
        QWEN_SPECIAL,
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        added=("<|vision_start|>", "<|vision_end|>", *QWEN_CHAT),
    )
    patch, merge = 4, 2
    shape = {
        "patch_size": patch,
        "merge_size": merge,
        "temporal_patch_size": 2,
        "min_pixels": 16 * 16,
        "max_pixels": 32 * 32,
    }
    processor = Qwen2_5_VLProcessor(
        Qwen2VLImageProcessor(**shape),
        tokenizer,
        Qwen2VLVideoProcessor(**shape),
        chat_template=_chat(
            CHATML["user"],
            "<|vision_start|><|image_pad|><|vision_end|>",
            CHATML["assistant"],
            system="<|im_start|>system\nyou are a helpful assistant .<|im_end|>\n",
        ),
    )
    config = Qwen2_5_VLConfig(
        # mrope_section sums to head_dim / 2 = 8
        text_config=text_config(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": TEXT["hidden_size"],
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
            "window_size": 16,
            "fullatt_block_indexes": [1],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    return config, processor


def _llava_next() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """LLaVA-NeXT (1.6, Vicuna prompt): ``<image>``xN, N from the anyres grid of 16-px tiles plus one newline
    feature per row; no end token, so the gate is the first token after the run."""
    from transformers import LlavaNextConfig, LlavaNextImageProcessor, LlavaNextProcessor

    tokenizer = word_tokenizer(LLAMA_SPECIAL, {"image_token": "<image>"}, add_bos=True)
    size, patch = 16, 4
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size]]
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_chat("USER: {content} ", "<image>\n", "ASSISTANT:"),
    )
    config = LlavaNextConfig(
        text_config={"model_type": "llama", **text_config(tokenizer)},
        vision_config=clip_vision(size, patch),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return config, processor


# architecture (transformers model type) -> builder returning (config, processor)
ARCHITECTURES = {
    "mistral3": _mistral3,
    "internvl": _internvl,
    "qwen2_5_vl": _qwen2_5_vl,
    "llava_next": _llava_next,
}
TINY_ARCHITECTURES: tuple[str, ...] = tuple(ARCHITECTURES)
