"""The toy's data: prompts exactly as the Chameleon wrapper writes them, training and evaluation drawings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from narrowgate_tasks import prompts, shapes

from .recipe import (
    CAPTION_KIND,
    FAMILY,
    HELD_OUT_COMBOS,
    N_TEST,
    SPLITS,
    TEST_SEED,
    TRAIN_COMBOS,
    ToyRecipe,
)


def prompt_text(kind: str) -> str:
    """The exact text the Chameleon wrapper gives the processor for a question of ``kind`` (or a caption)."""
    from interventions import family_spec

    request = prompts.CAPTION_REQUEST if kind == CAPTION_KIND else prompts.vqa_request(shapes.question(kind))
    return family_spec(FAMILY).placeholder + request + prompts.completion_suffix(request)


def derived_seed(purpose: str, seed: int) -> int:
    """Independent random streams per purpose, so a training seed never replays a test set's stream."""
    return int.from_bytes(
        hashlib.blake2b(f"narrowgate-toy:{purpose}:{seed}".encode(), digest_size=8).digest(), "little"
    )


def _pixels(spec: shapes.ShapeSpec) -> bytes:
    return shapes.draw(spec).tobytes()


def eval_specs(split: str) -> list[shapes.ShapeSpec]:
    """The drawings of an evaluation split: ``smoke`` (the packaged smoke set's, canonical), ``seen``
    (jittered, training combinations) or ``held_out`` (jittered, ``HELD_OUT_COMBOS``)."""
    if split == "smoke":
        from narrowgate_tasks.make_smoke_data import N_IMAGES, SEED

        return shapes.sample_specs(N_IMAGES, seed=SEED)
    combos = {"seen": TRAIN_COMBOS, "held_out": HELD_OUT_COMBOS}
    if split not in combos:
        raise ValueError(f"unknown evaluation split {split!r}; valid: {', '.join(SPLITS)}")
    return shapes.sample_specs(
        N_TEST, seed=derived_seed(f"test-{split}", TEST_SEED), combos=combos[split], jitter=True
    )


def train_specs(recipe: ToyRecipe) -> list[shapes.ShapeSpec]:
    """Training drawings of ``TRAIN_COMBOS``; drawings identical in pixels to any evaluated image are dropped."""
    evaluated = {_pixels(spec) for split in SPLITS for spec in eval_specs(split)}
    specs = shapes.sample_specs(
        recipe.n_train_images, seed=derived_seed("train", recipe.seed), combos=TRAIN_COMBOS, jitter=True
    )
    return [spec for spec in specs if _pixels(spec) not in evaluated]


def question_items(specs: Sequence[shapes.ShapeSpec]) -> list[tuple[shapes.ShapeSpec, str]]:
    """Every (drawing, question kind) pair: each drawing asked all three questions."""
    return [(spec, kind) for spec in specs for kind in shapes.QUESTION_KINDS]

