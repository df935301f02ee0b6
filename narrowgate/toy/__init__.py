"""The toy native model: a real Chameleon trained from scratch on the shapes world, shipped with the package.

Random tiny checkpoints prove that the machinery runs, but they score zero under every condition. This
one answers the smoke task's questions (colour, shape, position of one coloured shape), so what a
condition does to it is a measured result. ``narrowgate train-toy --out DIR`` rebuilds it; the copy in
``narrowgate/assets/toy_chameleon`` (``TOY_CHECKPOINT``) was written by that command with the defaults.

One file per concern: ``recipe`` (what determines the weights), ``world`` (prompts and drawings),
``model`` (architecture and VQ tokenizer), ``trainer`` (packed rows, loss, loop), ``report``
(measuring and saving), ``giveaway`` (what one image token tells), ``cli`` (``narrowgate train-toy``).

The recipe (``ToyRecipe``; the same seed gives the same weights on the same software and thread count):

- Architecture: ``ChameleonForConditionalGeneration`` with the tiny Chameleon's tokenizer and processor
  (``narrowgate.tiny``: 32-px images, a 3-level VQ, 8 x 8 = 64 image tokens, gate ``<eoss>``) and a
  larger text model. Images enter through the VQ tokenizer, as in the real model.
- Image tokens: the VQ encoder is frozen, as Chameleon's is, with weights set by hand
  (``set_patch_encoder``) so that it reads each 4 x 4-pixel patch's ink and colour, and the codebook is
  fitted by k-means to those features of training drawings (``fit_codebook``). The random encoder
  was tried first: its codes hide colour (see ``set_patch_encoder``).
- Data: jittered drawings (``shapes.sample_specs(jitter=True)``) of every colour/shape/position
  combination except the 6 ``HELD_OUT_COMBOS`` (all six occur in the smoke set, so its score includes
  unseen combinations). A drawing pixel-identical to an evaluated image (the packaged smoke drawings,
  the ``seen`` and ``held_out`` test drawings) is dropped, so no evaluated image is ever trained on.
- Prompts: exactly what the Chameleon wrapper gives the processor (text completion,
  ``<image>{question}\\nAnswer the question using a single word or phrase. Answer:``; captions after
  ``<image>Provide a one-sentence caption for the provided image.``).
- Loss: next-token cross-entropy on the answer word and end-of-sequence, on one reference caption per
  image (``captions``), and on the image tokens (``image_loss``, weight 1 by default: a "native"
  objective, the model also learns to continue images; 0 turns it off). All prompts of a drawing
  share one row (``pack``).
- Factors for the emergence study, off by default (the shipped recipe): ``gate_target`` (the gate
  predicts the first token of the caption or of one answer) and ``t2i`` (weighted text-to-image rows,
  caption then image codes); depth and width through the architecture fields.
- The second study's options, off by default: ``world`` ``scenes`` (textured scenes in which no single
  patch names the answer; ``questions`` ``single`` or ``aggregation``), ``image_tokens`` 256 (a 64-px
  image), ``codebook`` ``random`` and ``generation_first`` (a generation-first curriculum). Every run
  writes its learning curve (``CURVE_FILE``, ``probe``); ``giveaway`` measures how often one image
  token's code alone names the answer.
- Training is step-based, not time-based, so a seed gives the same model on a fast or a busy machine;
  it uses ``threads`` CPU threads (results can differ in the last bits with another thread count).
"""

from .model import (
    PATCH,
    build,
    fit_codebook,
    image_tokens,
    load,
    pixel_values_of,
    set_patch_encoder,
)
from .giveaway import giveaway
from .recipe import (
    CAPTION_KIND,
    CODEBOOKS,
    CURVE_FILE,
    FAMILY,
    GATE_TARGETS,
    IMAGE_TOKENS,
    QUESTION_SETS,
    WORLDS,
    HELD_OUT_COMBOS,
    RECIPE_FILE,
    REPORT_FILE,
    SPLITS,
    TOY_CHECKPOINT,
    TRAIN_COMBOS,
    ToyRecipe,
    question_kinds,
    toy_checkpoint,
)
from .report import (
    CONDITIONS,
    accuracy,
    folder_bytes,
    measure,
    save,
    smoke_accuracy,
    write_report,
)
from .trainer import Packed, Templates, loss, pack, probe, templates, train
from .world import SHAPES, World, eval_specs, prompt_text, question_items, train_specs, world_of


def smoke_task(recipe: ToyRecipe) -> str:
    """The lmms-eval smoke task that asks the recipe's world its questions."""
    return world_of(recipe).task


def examples_source(recipe: ToyRecipe) -> str:
    """The ``narrowgate.analyses.data.load_examples`` source of the recipe's world."""
    return world_of(recipe).examples


__all__ = [
    "CAPTION_KIND",
    "CODEBOOKS",
    "CONDITIONS",
    "CURVE_FILE",
    "FAMILY",
    "GATE_TARGETS",
    "HELD_OUT_COMBOS",
    "IMAGE_TOKENS",
    "QUESTION_SETS",
    "SHAPES",
    "WORLDS",
    "World",
    "PATCH",
    "RECIPE_FILE",
    "REPORT_FILE",
    "SPLITS",
    "TOY_CHECKPOINT",
    "TRAIN_COMBOS",
    "Packed",
    "Templates",
    "ToyRecipe",
    "accuracy",
    "build",
    "eval_specs",
    "examples_source",
    "giveaway",
    "fit_codebook",
    "folder_bytes",
    "image_tokens",
    "load",
    "loss",
    "measure",
    "pack",
    "pixel_values_of",
    "probe",
    "prompt_text",
    "question_items",
    "question_kinds",
    "save",
    "set_patch_encoder",
    "smoke_accuracy",
    "smoke_task",
    "templates",
    "toy_checkpoint",
    "train",
    "train_specs",
    "world_of",
    "write_report",
]
