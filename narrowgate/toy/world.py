"""The toy's data: prompts exactly as the Chameleon wrapper writes them, training and evaluation drawings.

Two worlds (``ToyRecipe.world``): ``shapes`` (one flat-coloured shape on white: today's toy, whose
image tokens can name the answer on their own) and ``scenes`` (``narrowgate_tasks.scenes``: textured
colours and backgrounds, so that no single patch does; ``single`` or ``aggregation`` questions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from narrowgate_tasks import prompts, scenes, shapes

from .recipe import (
    CAPTION_KIND,
    FAMILY,
    HELD_OUT_COMBOS,
    HELD_OUT_SEED,
    N_HELD_OUT,
    N_TEST,
    SPLITS,
    TEST_SEED,
    TRAIN_COMBOS,
    ToyRecipe,
    question_kinds,
)

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class World:
    """A world and its question set: its drawings, questions, lmms-eval task and analysis data."""

    name: str = "shapes"
    questions: str = "single"

    @property
    def kinds(self) -> tuple[str, ...]:
        return question_kinds(ToyRecipe(world=self.name, questions=self.questions))

    @property
    def task(self) -> str:
        """The lmms-eval smoke task that asks this world's questions."""
        return "narrowgate_smoke_vqa" if self.name == "shapes" else f"narrowgate_scenes_{self.questions}_vqa"

    @property
    def examples(self) -> str:
        """The ``narrowgate.analyses.data.load_examples`` source of this world's evaluation drawings."""
        return "shapes" if self.name == "shapes" else f"scenes_{self.questions}"

    @property
    def combos(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(training, held-out) combinations: the held-out ones are never drawn for training."""
        if self.name == "shapes":
            return TRAIN_COMBOS, HELD_OUT_COMBOS
        return scenes.split_combos(self.questions, N_HELD_OUT, HELD_OUT_SEED)

    def question(self, kind: str) -> str:
        return shapes.question(kind) if self.name == "shapes" else scenes.question(kind)

    def vocabulary(self, kind: str) -> tuple[str, ...]:
        return shapes.vocabulary(kind) if self.name == "shapes" else scenes.vocabulary(kind)

    def draw(self, spec: Any) -> Image.Image:
        return shapes.draw(spec) if self.name == "shapes" else scenes.draw(spec)

    def sample(self, n: int, seed: int, combos: tuple[Any, ...], jitter: bool) -> list[Any]:
        if self.name == "shapes":
            return shapes.sample_specs(n, seed=seed, combos=combos, jitter=jitter)
        return scenes.sample_specs(n, seed, self.questions, combos=combos, jitter=jitter)

    def smoke_specs(self) -> list[Any]:
        """The drawings of this world's packaged smoke task, in its rows' order."""
        if self.name == "shapes":
            from narrowgate_tasks.make_smoke_data import N_IMAGES, SEED

            return shapes.sample_specs(N_IMAGES, seed=SEED)
        from narrowgate_tasks.make_scenes_data import smoke_specs

        return smoke_specs(self.questions)


SHAPES = World()


def world_of(recipe: ToyRecipe) -> World:
    return World(recipe.world, recipe.questions)


def prompt_text(kind: str, world: World = SHAPES) -> str:
    """The exact text the Chameleon wrapper gives the processor for a question of ``kind`` (or a caption)."""
    from interventions import family_spec

    request = prompts.CAPTION_REQUEST if kind == CAPTION_KIND else prompts.vqa_request(world.question(kind))
    return family_spec(FAMILY).placeholder + request + prompts.completion_suffix(request)


def derived_seed(purpose: str, seed: int) -> int:
    """Independent random streams per purpose, so a training seed never replays a test set's stream."""
    return int.from_bytes(
        hashlib.blake2b(f"narrowgate-toy:{purpose}:{seed}".encode(), digest_size=8).digest(), "little"
    )


def eval_specs(split: str, world: World = SHAPES) -> list[Any]:
    """The drawings of an evaluation split: ``smoke`` (the packaged smoke set's, canonical), ``seen``
    (jittered, training combinations) or ``held_out`` (jittered, held-out combinations)."""
    if split == "smoke":
        return world.smoke_specs()
    if split not in SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; valid: {', '.join(SPLITS)}")
    train, held_out = world.combos
    # the shapes world keeps its historical stream names, so today's toy is unchanged bit for bit
    stream = f"test-{split}" if world == SHAPES else f"test-{world.name}-{world.questions}-{split}"
    return world.sample(N_TEST, derived_seed(stream, TEST_SEED), train if split == "seen" else held_out, jitter=True)


def train_specs(recipe: ToyRecipe) -> list[Any]:
    """Training drawings of the training combinations; drawings identical in pixels to any evaluated
    image are dropped."""
    world = world_of(recipe)
    evaluated = {world.draw(spec).tobytes() for split in SPLITS for spec in eval_specs(split, world)}
    stream = "train" if world == SHAPES else f"train-{world.name}-{world.questions}"
    specs = world.sample(recipe.n_train_images, derived_seed(stream, recipe.seed), world.combos[0], jitter=True)
    return [spec for spec in specs if world.draw(spec).tobytes() not in evaluated]


def question_items(specs: Sequence[Any], world: World = SHAPES) -> list[tuple[Any, str]]:
    """Every (drawing, question kind) pair: each drawing asked every question of its world."""
    return [(spec, kind) for spec in specs for kind in world.kinds]
