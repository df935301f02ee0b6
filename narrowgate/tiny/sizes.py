"""The sizes of the tiny checkpoints: one text model for every family, a small ViT, the CLIP tower."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Text-model size shared by every family: GQA (4 query heads over 2 key/value heads) on purpose,
# since interventions must handle repeated key/value heads.
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}
# A small ViT for the families with a continuous vision tower.
VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def text_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> dict:
    """The shared text-model size plus this tokenizer's vocabulary size and special ids."""
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return {**TEXT, **ids, **overrides}


def clip_vision(size: int, patch: int) -> dict:
    """The CLIP tower of the LLaVA-1.5 and LLaVA-NeXT checkpoints, at the tiny ViT size."""
    return {"model_type": "clip_vision_model", "image_size": size, "patch_size": patch, "projection_dim": 32, **VIT}
