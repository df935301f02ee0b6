"""The toy's recipe (everything that determines its weights) and where the shipped checkpoint lives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from narrowgate_tasks import scenes, shapes

TOY_CHECKPOINT = Path(__file__).parents[1] / "assets" / "toy_chameleon"
FAMILY = "chameleon"
RECIPE_FILE = "toy_recipe.json"
REPORT_FILE = "toy_report.json"
CURVE_FILE = "toy_curve.json"  # the learning curve (trainer.probe's accuracy every curve_every steps)

# Combinations never drawn for training: the held-out test set measures compositional generalisation.
N_HELD_OUT, HELD_OUT_SEED = 6, 0
TRAIN_COMBOS, HELD_OUT_COMBOS = shapes.split_combos(N_HELD_OUT, HELD_OUT_SEED)
# Jittered test drawings (in-process measures), from their own random stream.
TEST_SEED, N_TEST = 1_000_003, 96
SPLITS: tuple[str, ...] = ("smoke", "seen", "held_out")
CAPTION_KIND = "caption"
# The recipe fields that set the text model's config (the rest of the config is the tiny Chameleon's).
ARCHITECTURE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
# Conditions a toy can be trained under: the deterministic attention knockouts.
TRAINING_CONDITIONS: tuple[str, ...] = ("baseline", "gate_ablated", "gate_only", "image_ablated", "last_image_ablated")
# What the toy is trained and asked on (toy.world): today's one-shape drawings, or textured scenes in
# which no single image patch gives the answer away, asked single-property or aggregation questions.
WORLDS: tuple[str, ...] = ("shapes", "scenes")
QUESTION_SETS: tuple[str, ...] = tuple(scenes.QUESTION_SETS)
# Image tokens per image: a 32- or 64-px image through the same 4 x 4-pixel patch VQ (8 x 8 or 16 x 16 codes).
IMAGE_TOKENS: dict[int, int] = {64: 32, 256: 64}  # tokens -> image side in pixels
# How the VQ codebook is set: k-means of the patch features (today's) or fixed at random (see model.fit_codebook).
CODEBOOKS: tuple[str, ...] = ("kmeans", "random")
# What the gate (the last prefix position) can be trained to predict: nothing, or the first token of the
# drawing's reference caption (as in interleaved pretraining) or of one question's answer word.
GATE_TARGETS: tuple[str, ...] = (
    "none",
    CAPTION_KIND,
    *dict.fromkeys(kind for kinds in scenes.QUESTION_SETS.values() for kind in (*shapes.QUESTION_KINDS, *kinds)),
)


@dataclass(frozen=True)
class ToyRecipe:
    """Everything that determines the toy model. Text-model sizes follow ``narrowgate.tiny.TEXT``'s keys."""

    seed: int = 0
    steps: int = 1500
    batch_images: int = 16  # each image gives one row per question kind, plus a caption row
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    n_train_images: int = 6000
    captions: bool = True
    image_loss: float = 1.0
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    kmeans_images: int = 1000
    kmeans_iters: int = 30
    threads: int = 2
    # a condition active while training (every layer), with its knockout semantics (toy.knockout)
    condition: str = "baseline"
    knockout: str = "zero"
    # weight of the mean probability that the condition's cut edges take (see toy.knockout): 0 = none
    attention_loss: float = 0.0
    # what the gate token is trained to predict (GATE_TARGETS); "none": nothing, its next token is the request
    gate_target: str = "none"
    # weight of text-to-image rows (caption, then the drawing's image codes to predict): 0 = none
    t2i: float = 0.0
    # the world (WORLDS) and its question set (QUESTION_SETS; shapes asks "single" only)
    world: str = "shapes"
    questions: str = "single"
    image_tokens: int = 64  # IMAGE_TOKENS
    codebook: str = "kmeans"  # CODEBOOKS
    # share of the steps, at the start, that train generation only (image tokens, text-to-image rows,
    # captions, the gate's target); the questions join after: a generation-first curriculum
    generation_first: float = 0.0
    # optimizer steps between points of the learning curve (toy_curve.json)
    curve_every: int = 50

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), type(field.default)
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok and not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"ToyRecipe.{field.name} must be {kind.__name__}, got {value!r}")
        for name in (
            "steps",
            "batch_images",
            "n_train_images",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "kmeans_images",
            "threads",
            "curve_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ToyRecipe.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("image_loss", "attention_loss", "t2i"):
            if getattr(self, name) < 0:
                raise ValueError(f"ToyRecipe.{name} must be >= 0, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"ToyRecipe.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}), and that by num_key_value_heads ({self.num_key_value_heads})"
            )
        for name, valid in (("world", WORLDS), ("questions", QUESTION_SETS), ("codebook", CODEBOOKS), ("image_tokens", tuple(IMAGE_TOKENS))):
            if getattr(self, name) not in valid:
                raise ValueError(f"ToyRecipe.{name} must be one of {', '.join(map(str, valid))}, got {getattr(self, name)!r}")
        if self.world == "shapes" and self.questions != "single":
            raise ValueError(f"ToyRecipe.questions {self.questions!r} needs world scenes (the shapes world asks single questions only)")
        targets = ("none", CAPTION_KIND, *question_kinds(self))
        if self.gate_target not in targets:
            raise ValueError(
                f"ToyRecipe.gate_target must be one of {', '.join(targets)} for world {self.world} with {self.questions} "
                f"questions, got {self.gate_target!r}"
            )
        if not 0 <= self.generation_first < 1:
            raise ValueError(f"ToyRecipe.generation_first must be in [0, 1), got {self.generation_first!r}")
        if self.generation_first > 0 and not (self.image_loss > 0 or self.t2i > 0 or self.captions):
            raise ValueError("ToyRecipe.generation_first needs something to generate: image_loss > 0, t2i > 0 or captions")
        if self.t2i > 0 and self.condition != "baseline":
            raise ValueError(
                "ToyRecipe.t2i needs condition baseline: the condition's knockouts follow the image-first rows' "
                f"layout, which a text-to-image row does not have (got condition {self.condition!r})"
            )
        if self.knockout not in ("zero", "mask"):
            raise ValueError(f"ToyRecipe.knockout must be zero or mask, got {self.knockout!r}")
        if self.condition not in TRAINING_CONDITIONS:
            raise ValueError(
                f"ToyRecipe.condition must be one of {', '.join(TRAINING_CONDITIONS)}, got {self.condition!r} "
                "(gate_randomized and random_image_ablated draw per example, which a packed row does not have)"
            )


def question_kinds(recipe: ToyRecipe) -> tuple[str, ...]:
    """The question kinds the recipe's toy is trained and asked on."""
    return shapes.QUESTION_KINDS if recipe.world == "shapes" else scenes.QUESTION_SETS[recipe.questions]


def toy_checkpoint() -> Path:
    """The shipped toy checkpoint's folder; a clear error when the package was installed without it."""
    if not (TOY_CHECKPOINT / "config.json").is_file():
        raise FileNotFoundError(
            f"the toy checkpoint is missing from {TOY_CHECKPOINT}; reinstall narrowgate with its package data or "
            f"rebuild it: narrowgate train-toy --out {TOY_CHECKPOINT}"
        )
    return TOY_CHECKPOINT

