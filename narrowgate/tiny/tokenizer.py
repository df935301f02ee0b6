"""The word-level tokenizer of the tiny checkpoints, built offline: the special tokens of the family's own
tokenizer, common English words, single digits and punctuation; every other word is ``<unk>``."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from narrowgate.tiny.sizes import TEXT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

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


def word_tokenizer(
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
