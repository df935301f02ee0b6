"""Write a tiny random-weight checkpoint of a model family, for offline tests and demos.

Each checkpoint is a real transformers model (the family's own class) with its real processor and a
tokenizer built offline, at a size that runs on a CPU in milliseconds: hidden size 64, 2 layers,
grouped-query attention (4 query heads, 2 key/value heads), at most 64 image tokens per image.
The image-token structure (start tokens, image run, gate tokens) is the family's own, with the token
strings of ``interventions.families``; the weights are random, so nothing it says means anything.
"""

from __future__ import annotations

import argparse
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from interventions.families import FAMILIES, family_spec

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerFast, ProcessorMixin

TINY_FAMILIES: tuple[str, ...] = tuple(FAMILIES)

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
# Special tokens of the Llama/Mistral-style tokenizers (LLaVA-1.5, Chameleon, Pixtral).
LLAMA_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
# Qwen2 tokenizers (LLaVA-OneVision, Qwen2-VL) have no bos token and add none.
QWEN_SPECIAL = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"}
# Chat-format control tokens of the real tokenizers, so that chat-style prompts tokenize as they do there.
QWEN_CHAT = ("<|im_start|>",)

# Common English words so that VQA prompts and captions tokenize to real tokens (the rest is <unk>).
WORDS = """
a an the this that these those there here it its is are was were be been being am do does did done
has have had having will would can could should may might must not no yes and or but if then than so
as of in on at by for with without from to into onto over under above below up down out off near
between behind front next top bottom left right side middle center inside outside around through
what which who whom whose where when why how many much more most less few some any all each every
both other another one two three four five six seven eight nine ten eleven twelve zero first second
third last half several lot lots number count
i you he she we they me him her us them my your his our their mine yours
color colour colors red green blue yellow orange purple pink brown black white gray grey dark light
bright silver gold
shape shapes circle square triangle rectangle star line dot disk box ball round flat big small large
little tiny huge long short tall wide high low old new young empty full open closed
image picture photo photograph scene view background foreground object objects thing things
man men woman women person people boy girl child children kid kids baby player players guy lady
dog dogs cat cats horse horses bird birds cow cows sheep elephant elephants giraffe giraffes zebra
zebras bear bears animal animals
car cars bus buses truck trucks train trains plane airplane boat boats bike bicycle motorcycle
street road sidewalk building buildings house city sky water sea ocean beach river lake grass field
tree trees snow mountain hill park room kitchen bathroom bedroom table chair chairs bed couch sofa
window door wall floor desk computer laptop phone screen tv television clock sign light lights
food pizza sandwich cake plate bowl cup glass bottle banana bananas apple apples orange oranges
hot dog donut broccoli carrot
shirt hat jacket umbrella bag frisbee kite skateboard surfboard skis snowboard racket bat glove ball
tennis baseball soccer game toilet sink mirror vase book books teddy scissors toothbrush
sitting standing walking running riding playing holding eating looking lying flying parked parking
watching waiting wearing carrying swimming jumping talking using sleeping
sit stand walk run ride play hold eat look lie fly park watch wait wear carry swim jump talk use
sleep see make made take get go going come show shows shown
describe caption answer question questions word words sentence phrase briefly short single using
provide provided give please following
together alone near far front back day night time
user assistant system human
"""

# Whole words, single digits (so Emu3's "4*4" header is three tokens), single punctuation marks, newlines.
PRE_TOKENS = r"\n|[^\W\d_]+|\d|[^\w\s]|_"
PUNCTUATION = tuple(".,?!:;'\"()[]-*/_")


def _tokenizer(
    special: dict[str, str],
    extra_special: dict[str, str] | None = None,
    added: tuple[str, ...] = (),
    vocab_tokens: tuple[str, ...] = (),
    add_bos: bool = False,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: ``special`` (bos/eos/pad/unk/sep...) and ``extra_special`` (attributes such
    as ``image_token``) are split out before pre-tokenization; ``added`` are further special strings the
    processor writes (start/gate tokens not exposed as attributes); ``vocab_tokens`` only live in the
    vocabulary (VQ image codes, which the model maps by name and the text never contains).

    Text is lower-cased and split by ``PRE_TOKENS``; unknown words become ``<unk>``.
    ``add_bos``: prepend the bos token to every text, as the family's own tokenizer does.
    Left padding, since every family generates after the prompt.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    extra_special = extra_special or {}
    specials = list(dict.fromkeys([*special.values(), *extra_special.values(), *added]))
    words = list(dict.fromkeys([*WORDS.split(), *string.ascii_lowercase, *string.digits, *PUNCTUATION, "\n"]))
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*specials, *words, *vocab_tokens]))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special["unk_token"]))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENS), behavior="removed", invert=True)
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    if add_bos:
        bos = special["bos_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **special,
        extra_special_tokens=extra_special,
        padding_side="left",
        model_max_length=TEXT["max_position_embeddings"],
    )


def _text(tokenizer: PreTrainedTokenizerFast, **overrides) -> dict:
    """The shared text-model size plus this tokenizer's vocabulary size and special ids."""
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return {**TEXT, **ids, **overrides}


def _chameleon() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<racm3:break>`` ``<image>``x64 ``<eoss>``: a 32-px image through a 3-level VQ gives 8x8 codes."""
    from transformers import ChameleonConfig, ChameleonImageProcessor, ChameleonProcessor

    codebook = 64
    # VQ code k is the vocabulary entry IMGIMG<k with digits written A-J>Z.
    codes = tuple("IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(k)) + "Z" for k in range(codebook))
    tokenizer = _tokenizer(
        {**LLAMA_SPECIAL, "sep_token": "<reserved08706>"},
        {"image_token": "<image>", "boi_token": "<racm3:break>", "eoi_token": "<eoss>"},
        vocab_tokens=codes,
        add_bos=True,
    )
    size = 32
    image_processor = ChameleonImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = ChameleonProcessor(image_processor, tokenizer, image_seq_length=(size // 4) ** 2)
    config = ChameleonConfig(
        **_text(tokenizer),
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


def _emu3() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<|image start|>`` h ``*`` w ``<|image token|>`` ``<image>``x h(w+1) ``<|extra_201|>`` ``<|image end|>``;
    images are resized to at most 32x32 px and the VQ downsamples by 8 (4 levels), so h, w <= 4."""
    from transformers import Emu3Config, Emu3ImageProcessor, Emu3Processor

    codebook = 64
    tokenizer = _tokenizer(
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
        text_config=_text(tokenizer),
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


def _clip_vision(size: int, patch: int) -> dict:
    """The CLIP tower of the LLaVA-1.5 and LLaVA-NeXT checkpoints, at the tiny ViT size."""
    return {"model_type": "clip_vision_model", "image_size": size, "patch_size": patch, "projection_dim": 32, **VIT}


def _llava() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """LLaVA-1.5: ``<image>``x16 and no begin/end token; a CLIP tower on 16-px images in 4-px patches (the CLS
    feature is dropped, as in LLaVA-1.5's "default" feature selection)."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaProcessor

    tokenizer = _tokenizer(LLAMA_SPECIAL, {"image_token": "<image>"}, add_bos=True)
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
        text_config={"model_type": "llama", **_text(tokenizer)},
        vision_config=_clip_vision(size, patch),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return config, processor


def _llava_onevision() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<image>``xN, N depending on the image's shape (anyres): a 4x4 base grid plus the unpadded grid of
    16-px tiles with one newline feature per row; SigLIP tower, Qwen2 text model."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = _tokenizer(QWEN_SPECIAL, {"image_token": "<image>", "video_token": "<video>"}, added=QWEN_CHAT)
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
        text_config={"model_type": "qwen2", **_text(tokenizer)},
        vision_config={"model_type": "siglip_vision_model", "image_size": size, "patch_size": patch, **VIT},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    return config, processor


def _pixtral() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """Rows of ``[IMG]``xw ``[IMG_BREAK]``, the last row ending ``[IMG_END]``: a Pixtral tower on images of at
    most 32 px in 8-px patches (w, h <= 4), in the Llava class as mistral-community/pixtral-12b."""
    from transformers import LlavaConfig, PixtralImageProcessor, PixtralProcessor

    tokenizer = _tokenizer(
        LLAMA_SPECIAL, added=("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"), add_bos=True
    )
    size, patch = 32, 8
    image_processor = PixtralImageProcessor(size={"longest_edge": size}, patch_size={"height": patch, "width": patch})
    processor = PixtralProcessor(image_processor, tokenizer, patch_size=patch)
    config = LlavaConfig(
        text_config={"model_type": "mistral", **_text(tokenizer)},
        vision_config={"model_type": "pixtral", "image_size": size, "patch_size": patch, **VIT},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
    )
    return config, processor


def _janus() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<begin_of_image>`` ``<image_placeholder>``x16 ``<end_of_image>``: a SigLIP-like tower on 16-px images
    in 4-px patches; the image-generation VQ is kept (the class needs it) at a 64-code minimum."""
    from transformers import JanusConfig, JanusImageProcessor, JanusProcessor

    tokenizer = _tokenizer(
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
        text_config={"model_type": "llama", **_text(tokenizer)},
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


def _qwen2_vl() -> tuple[PreTrainedConfig, ProcessorMixin]:
    """``<|vision_start|>`` ``<|image_pad|>``xN ``<|vision_end|>``: images resized to 16..32 px on a multiple
    of 8 (4-px patches merged 2x2), so N <= 16."""
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tokenizer = _tokenizer(
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
        text_config=_text(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}),
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


# family -> builder returning (config, processor); keys must be exactly the families of interventions.families.
BUILDERS: dict[str, Callable[[], tuple[PreTrainedConfig, ProcessorMixin]]] = {
    "chameleon": _chameleon,
    "emu3": _emu3,
    "llava": _llava,
    "llava_onevision": _llava_onevision,
    "pixtral": _pixtral,
    "janus": _janus,
    "qwen2_vl": _qwen2_vl,
}


def build(family: str, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A tiny random-weight model of ``family`` (eval mode) and its processor; same seed, same weights.

    ``family`` is one of the declared families or an architecture of the generic ``auto`` family
    (``narrowgate.tiny_auto``)."""
    import torch
    import transformers

    from narrowgate.tiny_auto import ARCHITECTURES

    if family in ARCHITECTURES:
        from interventions.generic import model_class_name

        config, processor = ARCHITECTURES[family]()
        model_class = model_class_name(config)
    else:
        config, processor = BUILDERS[family]()
        model_class = family_spec(family).model_class
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_class)(config)
    return model.eval(), processor


def save(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write ``build(family, seed)`` to ``out_dir`` with ``save_pretrained``; returns the directory."""
    out = Path(out_dir)
    model, processor = build(family, seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", nargs="?", help="a family or an architecture of the auto family (see --list)")
    parser.add_argument("out_dir", nargs="?", help="directory to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    parser.add_argument("--list", action="store_true", help="list the families and auto-family architectures, and exit")


def run(args: argparse.Namespace) -> int:
    from narrowgate.tiny_auto import TINY_ARCHITECTURES

    if args.list:
        print("\n".join([*TINY_FAMILIES, *TINY_ARCHITECTURES]))
        return 0
    known = f"families: {', '.join(TINY_FAMILIES)}; auto-family architectures: {', '.join(TINY_ARCHITECTURES)}"
    if args.family is None or args.out_dir is None:
        print(f"narrowgate tiny: give FAMILY and OUT_DIR ({known})", file=sys.stderr)
        return 2
    if args.family not in (*TINY_FAMILIES, *TINY_ARCHITECTURES):
        print(f"narrowgate tiny: unknown family or architecture {args.family!r} ({known})", file=sys.stderr)
        return 2
    out = save(args.family, args.out_dir, args.seed)
    print(f"wrote a tiny {args.family} checkpoint (seed {args.seed}) to {out}")
    return 0
