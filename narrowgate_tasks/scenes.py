"""Textured scenes: the shapes world redrawn so that no single small patch gives the answer away.

Same palette, shapes and words as ``shapes``, but every pixel is noisy: the background is a random light
grey per pixel and an object's pixels take its colour only about half the time (otherwise one of the
other three palette colours), so the colour of an object is a property of many pixels together. Two
question sets: ``single`` (one object, the shapes world's three questions) and ``aggregation`` (2-4
objects in distinct quadrants: how many, which colour holds the strict majority, are they all alike),
whose answers no single object carries. ``draw`` is a pure function of a ``SceneSpec`` (its ``texture``
seeds the noise); ``sample_specs`` is balanced over answer combinations and can hold some out.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from narrowgate_tasks import shapes

QUESTION_SETS: dict[str, tuple[str, ...]] = {
    "single": shapes.QUESTION_KINDS,
    "aggregation": ("count", "majority", "alike"),
}
QUADRANTS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
}
COUNTS: tuple[str, ...] = ("two", "three", "four")
_AGGREGATION_QUESTIONS = {
    "count": "How many shapes are there?",
    "majority": "What colour are most of the shapes?",
    "alike": "Do all the shapes have one colour?",
}
# Aggregation captions by ``alike``; each names the count and the majority colour.
_AGGREGATION_CAPTIONS = {
    "yes": (
        "{count} {majority} shapes.",
        "There are {count} shapes and all are {majority}.",
        "All {count} shapes in the image are {majority}.",
        "The {count} shapes are all {majority}.",
        "{count} small {majority} shapes on a white background.",
    ),
    "no": (
        "{count} shapes, most of them {majority}.",
        "There are {count} shapes and most are {majority}.",
        "Most of the {count} shapes in the image are {majority}.",
        "The {count} shapes are not all one colour; most are {majority}.",
        "{count} small shapes on a white background, most of them {majority}.",
    ),
}
OWN_COLOUR = 0.5  # probability that an object's pixel has the object's colour
# background pixels are 255 - BACKGROUND_STEP * U{0..4}, the same in R, G and B (few levels: small PNGs)
BACKGROUND_STEP = 15
# Per question set: objects' canonical scale, and under jitter the scale's spread and the offsets' reach
# (aggregation objects stay well inside their quadrant; single ones vary as in ``shapes.sample_specs``).
_PLACEMENT = {"single": (1.0, 0.3, 0.08), "aggregation": (0.7, 0.15, 0.04)}

Combo = tuple[str, ...]


@dataclass(frozen=True)
class SceneObject(shapes.PlacedShape):
    """One object: at a side (``shapes.POSITIONS``, single scenes) or in a quadrant (``QUADRANTS``)."""

    PLACES: ClassVar[tuple[str, ...]] = (*shapes.POSITIONS, *QUADRANTS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.position in QUADRANTS and shapes.RADIUS * self.scale + max(abs(self.dx), abs(self.dy)) >= 0.25:
            raise ValueError(f"an object in a quadrant must stay inside it: {self}")

    @property
    def centre(self) -> tuple[float, float]:
        fx, fy = {**shapes.CENTRES, **QUADRANTS}[self.position]
        return fx + self.dx, fy + self.dy


@dataclass(frozen=True)
class SceneSpec:
    """What one image shows; ``texture`` seeds its per-pixel noise (same spec, same pixels)."""

    objects: tuple[SceneObject, ...]
    texture: int

    def __post_init__(self) -> None:
        if len(self.objects) == 1:
            if self.objects[0].position not in shapes.POSITIONS:
                raise ValueError(f"a single object stands at one of {shapes.POSITIONS}, got {self.objects[0]}")
        elif not 2 <= len(self.objects) <= 4 or any(o.position not in QUADRANTS for o in self.objects):
            raise ValueError(f"a scene has one object, or 2-4 objects in quadrants, got {self.objects}")
        elif len({o.position for o in self.objects}) < len(self.objects):
            raise ValueError(f"two objects share a quadrant: {self.objects}")
        elif Counter(o.colour for o in self.objects).most_common(1)[0][1] * 2 <= len(self.objects):
            raise ValueError(f"no colour holds a strict majority of {self.objects}")

    @property
    def questions(self) -> str:
        return "single" if len(self.objects) == 1 else "aggregation"

    @property
    def combo(self) -> Combo:
        """The answers that determine the captions, in ``QUESTION_SETS[self.questions]`` order."""
        return tuple(self.answer(kind) for kind in QUESTION_SETS[self.questions])

    def answer(self, kind: str) -> str:
        shapes.check(f"question kind of a {self.questions} scene", kind, QUESTION_SETS[self.questions])
        if kind in shapes.QUESTION_KINDS:
            return getattr(self.objects[0], kind)
        colour, n = Counter(o.colour for o in self.objects).most_common(1)[0]
        alike = "yes" if n == len(self.objects) else "no"
        return {"count": COUNTS[len(self.objects) - 2], "majority": colour, "alike": alike}[kind]

    def captions(self) -> list[str]:
        """Five reference captions (the shapes world's templates for single scenes)."""
        if self.questions == "single":
            colour, shape, position = self.combo
            where = shapes.WHERE[position]
            return [t.format(colour=colour, shape=shape, where=where) for t in shapes.CAPTION_TEMPLATES]
        count, majority, alike = self.combo
        return [t.format(count=count, majority=majority).capitalize() for t in _AGGREGATION_CAPTIONS[alike]]


def _question_set(kind: str) -> str:
    for name, kinds in QUESTION_SETS.items():
        if kind in kinds:
            return name
    valid = ", ".join(k for kinds in QUESTION_SETS.values() for k in kinds)
    raise ValueError(f"unknown question kind {kind!r}; valid: {valid}")


def question(kind: str) -> str:
    """The fixed question text of ``kind`` (single kinds: the same as ``shapes.question``)."""
    return shapes.question(kind) if _question_set(kind) == "single" else _AGGREGATION_QUESTIONS[kind]


def vocabulary(kind: str) -> tuple[str, ...]:
    """Every possible answer to a question of ``kind``."""
    if _question_set(kind) == "single":
        return shapes.vocabulary(kind)
    return {"count": COUNTS, "majority": tuple(shapes.COLOURS), "alike": ("yes", "no")}[kind]


def all_combos(questions: str) -> tuple[Combo, ...]:
    """Every possible answer combination of ``questions``; aggregation: "two" objects are always alike
    (a strict majority of two is both)."""
    shapes.check("question set", questions, QUESTION_SETS)
    if questions == "single":
        return shapes.ALL_COMBOS
    return tuple(c for c in itertools.product(COUNTS, shapes.COLOURS, ("yes", "no")) if c[::2] != ("two", "no"))


def split_combos(questions: str, n_held_out: int, seed: int) -> tuple[tuple[Combo, ...], tuple[Combo, ...]]:
    """(train, held-out): ``n_held_out`` combinations chosen by ``seed`` never appear in train."""
    combos = all_combos(questions)
    if not 0 <= n_held_out < len(combos):
        raise ValueError(f"n_held_out must be in [0, {len(combos) - 1}], got {n_held_out}")
    held_out = set(random.Random(seed).sample(combos, n_held_out))
    return tuple(c for c in combos if c not in held_out), tuple(c for c in combos if c in held_out)


def _objects(combo: Combo, questions: str, rng: random.Random, jitter: bool) -> tuple[SceneObject, ...]:
    """Objects with ``combo``'s answers; the layout, aggregation shapes and any jitter drawn by ``rng``."""
    if questions == "single":
        colour, shape, position = combo
        colours, places = [colour], [position]
    else:
        count, majority, alike = combo
        n = COUNTS.index(count) + 2
        minority = 0 if alike == "yes" else n - n // 2 - 1  # the largest minority that keeps a strict majority
        others = [rng.choice([c for c in shapes.COLOURS if c != majority]) for _ in range(minority)]
        colours = rng.sample([majority] * (n - minority) + others, n)
        places = rng.sample(list(QUADRANTS), n)
    scale, spread, reach = _PLACEMENT[questions]
    objects = []
    for colour, place in zip(colours, places):
        if questions == "aggregation":
            shape = rng.choice(shapes.SHAPES)
        if jitter:
            size = rng.uniform(scale - spread, scale + spread)
            dx, dy = rng.uniform(-reach, reach), rng.uniform(-reach, reach)
            objects.append(SceneObject(colour, shape, place, scale=size, dx=dx, dy=dy))
        else:
            objects.append(SceneObject(colour, shape, place, scale=scale))
    return tuple(objects)


def sample_specs(
    n: int, seed: int, questions: str, combos: tuple[Combo, ...] | None = None, jitter: bool = False
) -> list[SceneSpec]:
    """``n`` specs drawn by ``seed``: passes over ``combos`` (default all), each pass in a fresh shuffled
    order, so the first ``len(combos)`` specs have distinct answer combinations and larger ``n`` stays
    balanced. ``jitter`` varies size and offset per object; without it objects sit at their canonical
    place and size. Textures, the shapes of aggregation objects and their layout are drawn always."""
    combos = all_combos(questions) if combos is None else combos
    unknown = set(combos) - set(all_combos(questions))
    if n < 0 or not combos or unknown:
        raise ValueError(f"need n >= 0 and {questions} combinations, got n={n}, {combos} (unknown: {sorted(unknown)})")
    rng = random.Random(seed)
    specs: list[SceneSpec] = []
    while len(specs) < n:
        for combo in rng.sample(combos, len(combos))[: n - len(specs)]:
            specs.append(SceneSpec(_objects(combo, questions, rng, jitter), texture=rng.getrandbits(32)))
    return specs


def mask(obj: SceneObject, size: int = 64) -> np.ndarray:
    """Boolean ``size`` x ``size`` mask of ``obj``'s pixels (the geometry of ``shapes.draw``)."""
    image = Image.new("L", (size, size), 0)
    fx, fy = obj.centre
    shapes.paint(ImageDraw.Draw(image), obj.shape, fx * size, fy * size, shapes.RADIUS * size * obj.scale, 255)
    return np.asarray(image) > 0


def draw(spec: SceneSpec, size: int = 64) -> Image.Image:
    """The RGB image of ``spec``: textured background and objects (pure: same spec, same pixels)."""
    rng = np.random.default_rng(spec.texture)
    grey = (255 - BACKGROUND_STEP * rng.integers(0, 5, (size, size))).astype(np.uint8)
    own = rng.random((size, size)) < OWN_COLOUR
    other = rng.integers(0, len(shapes.COLOURS) - 1, (size, size))
    palette = np.array(list(shapes.COLOURS.values()), dtype=np.uint8)
    pixels = np.repeat(grey[:, :, None], 3, axis=2)
    for obj in spec.objects:
        index = list(shapes.COLOURS).index(obj.colour)
        # the other colours' indices skip the object's own: 0..2 -> the three palette entries != index
        texture = np.where(own, index, other + (other >= index))
        where = mask(obj, size)
        pixels[where] = palette[texture[where]]
    return Image.fromarray(pixels, "RGB")
