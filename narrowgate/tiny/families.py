"""One tiny-checkpoint builder per declared family, named after it (``interventions.FAMILIES``): each returns
the family's transformers config and real processor at the tiny size (``narrowgate.tiny.sizes``), with
the token strings of the family's spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from narrowgate.tiny.sizes import TEXT, VIT, clip_vision, text_config
from narrowgate.tiny.tokenizer import LLAMA_SPECIAL, QWEN_CHAT, QWEN_SPECIAL, word_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, ProcessorMixin


def chameleon() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<racm3:break>`` ``<image>``x64 ``<eoss>``: a 32-px image through a 3-level VQ gives 8x8 codes."""
    from transformers import ChameleonConfig, ChameleonImageProcessor, ChameleonProcessor

    codebook = 64
    # VQ code k is the vocabulary entry IMGIMG<k with digits written A-J>Z.
    codes = tuple("IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(k)) + "Z" for k in range(codebook))
    tokenizer = word_tokenizer(
        {**LLAMA_SPECIAL, "sep_token": "<reserved08706>"},
        {"image_token": "<image>", "boi_token": "<racm3:break>", "eoi_token": "<eoss>"},
        vocab_tokens=codes,
        add_bos=True,
    )
    size = 32
    image_processor = ChameleonImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = ChameleonProcessor(image_processor, tokenizer, image_seq_length=(size // 4) ** 2)
    config = ChameleonConfig(
        **text_config(tokenizer),
        vocabulary_map=tokenizer.get_vocab(),
        vq_config={
            "embed_dim": 32,
            "num_embeddings": codebook,
            "latent_channels": 32,
            "resolution": size,
            "base_channels": 32,  # GroupNorm uses 32 groups
            "channel_multiplier": [1, 1, 1],
            "num_res_blocks": 1,
        },
    )
    return config, processor


def emu3() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<|image start|>`` h ``*`` w ``<|image token|>`` ``<image>``x h(w+1) ``<|extra_201|>`` ``<|image end|>``;
    images are resized to at most 32x32 px and the VQ downsamples by 8 (4 levels), so h, w <= 4."""
    from transformers import Emu3Config, Emu3ImageProcessor, Emu3Processor

    codebook = 64
    tokenizer = word_tokenizer(
        {
            "bos_token": "<|extra_203|>",
            "eos_token": "<|extra_204|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<unk>",
        },
        {
            "image_token": "<image>",
            "boi_token": "<|image start|>",
            "eoi_token": "<|image end|>",
            "image_wrapper_token": "<|image token|>",
            "eof_token": "<|extra_201|>",
        },
        added=("<|extra_200|>",),  # end of an image row, written by the model, never by the processor
        vocab_tokens=tuple(f"<|visual token {k:06d}|>" for k in range(codebook)),
    )
    image_processor = Emu3ImageProcessor(min_pixels=16 * 16, max_pixels=32 * 32, spatial_factor=8)
    processor = Emu3Processor(image_processor, tokenizer)
    config = Emu3Config(
        text_config=text_config(tokenizer),
        vocabulary_map=tokenizer.get_vocab(),
        vq_config={
            "codebook_size": codebook,
            "embed_dim": 4,
            "latent_channels": 4,
            "base_channels": 32,  # GroupNorm uses 32 groups
            "channel_multiplier": [1, 1, 1, 1],  # Emu3Processor hard-codes a downsample of 8
            "num_res_blocks": 1,
            "attn_resolutions": [],
            "hidden_size": 32,  # base_channels x channel_multiplier[-1]
        },
    )
    return config, processor


def llava() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """LLaVA-1.5: ``<image>``x16 and no begin/end token; a CLIP tower on 16-px images in 4-px patches (the CLS
    feature is dropped, as in LLaVA-1.5's "default" feature selection)."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaProcessor

    tokenizer = word_tokenizer(LLAMA_SPECIAL, {"image_token": "<image>"}, add_bos=True)
    size, patch = 16, 4
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        text_config={"model_type": "llama", **text_config(tokenizer)},
        vision_config=clip_vision(size, patch),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return config, processor


def llava_onevision() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<image>``xN, N depending on the image's shape (anyres): a 4x4 base grid plus the unpadded grid of
    16-px tiles with one newline feature per row; SigLIP tower, Qwen2 text model."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = word_tokenizer(QWEN_SPECIAL, {"image_token": "<image>", "video_token": "<video>"}, added=QWEN_CHAT)
    size, patch = 16, 4
    # tiles of 1x1, 1x2, 2x1 keep a run at <= 16 + 32 + 4 = 52 image tokens
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size]]
    image_processor = LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints)
    video_processor = LlavaOnevisionVideoProcessor(size={"height": size, "width": size})
    processor = LlavaOnevisionProcessor(
        image_processor,
        tokenizer,
        video_processor,
        num_image_tokens=(size // patch) ** 2,
        vision_feature_select_strategy="full",
    )
    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **text_config(tokenizer)},
        vision_config={"model_type": "siglip_vision_model", "image_size": size, "patch_size": patch, **VIT},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    return config, processor


def pixtral() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """Rows of ``[IMG]``xw ``[IMG_BREAK]``, the last row ending ``[IMG_END]``: a Pixtral tower on images of at
    most 32 px in 8-px patches (w, h <= 4), in the Llava class as mistral-community/pixtral-12b."""
    from transformers import LlavaConfig, PixtralImageProcessor, PixtralProcessor

    tokenizer = word_tokenizer(
        LLAMA_SPECIAL, added=("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"), add_bos=True
    )
    size, patch = 32, 8
    image_processor = PixtralImageProcessor(size={"longest_edge": size}, patch_size={"height": patch, "width": patch})
    processor = PixtralProcessor(image_processor, tokenizer, patch_size=patch)
    config = LlavaConfig(
        text_config={"model_type": "mistral", **text_config(tokenizer)},
        vision_config={"model_type": "pixtral", "image_size": size, "patch_size": patch, **VIT},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
    )
    return config, processor


def janus() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<begin_of_image>`` ``<image_placeholder>``x16 ``<end_of_image>``: a SigLIP-like tower on 16-px images
    in 4-px patches; the image-generation VQ is kept (the class needs it) at a 64-code minimum."""
    from transformers import JanusConfig, JanusImageProcessor, JanusProcessor

    tokenizer = word_tokenizer(
        {
            "bos_token": "<｜begin▁of▁sentence｜>",
            "eos_token": "<｜end▁of▁sentence｜>",
            "pad_token": "<｜▁pad▁｜>",
            "unk_token": "<unk>",
        },
        {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"},
        added=("<|User|>", "<|Assistant|>"),
        add_bos=True,
    )
    size, patch = 16, 4
    num_image_tokens = (size // patch) ** 2
    image_processor = JanusImageProcessor(size={"height": size, "width": size}, min_size=patch)
    processor = JanusProcessor(image_processor, tokenizer, num_image_tokens=num_image_tokens)
    config = JanusConfig(
        text_config={"model_type": "llama", **text_config(tokenizer)},
        vision_config={
            "image_size": size,
            "patch_size": patch,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_ratio": 2.0,
            "projection_dim": TEXT["hidden_size"],
            "depth": 2,
            "num_image_tokens": num_image_tokens,
        },
        vq_config={
            "embed_dim": 8,
            "num_embeddings": 64,
            "latent_channels": 32,
            "base_channels": 32,  # GroupNorm uses 32 groups
            "channel_multiplier": [1, 1],
            "num_res_blocks": 1,
            "num_patches": size // 2,
            "projection_dim": TEXT["hidden_size"],
            "image_token_embed_dim": TEXT["hidden_size"],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
    )
    return config, processor


def qwen2_vl() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<|vision_start|>`` ``<|image_pad|>``xN ``<|vision_end|>``: images resized to 16..32 px on a multiple
    of 8 (4-px patches merged 2x2), so N <= 16."""
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tokenizer = word_tokenizer(
        QWEN_SPECIAL,
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        added=("<|vision_start|>", "<|vision_end|>", *QWEN_CHAT),
    )
    patch, merge = 4, 2
    shape = {"patch_size": patch, "merge_size": merge, "temporal_patch_size": 2}
    image_processor = Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=32 * 32, **shape)
    video_processor = Qwen2VLVideoProcessor(min_pixels=16 * 16, max_pixels=32 * 32, **shape)
    processor = Qwen2VLProcessor(image_processor, tokenizer, video_processor)
    config = Qwen2VLConfig(
        # mrope_section sums to head_dim / 2 = 8
        text_config=text_config(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}),
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": TEXT["hidden_size"],
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    return config, processor
