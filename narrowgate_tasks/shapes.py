"""Coloured shapes at a position: a tiny synthetic image world with a small, single-word vocabulary.

One vocabulary serves the packaged smoke tasks (``make_smoke_data``) and the toy-model training data:
every image shows one shape of one colour at one position, so each question has a one-word answer and
each caption is a template over the same words. ``draw`` is a pure function of a ``ShapeSpec``;
``sample_specs`` is a seeded generator that can hold whole combinations out (``split_combos``), so a
test set can contain colour/shape/position triples never seen in training.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "position")

# Centre of the shape as a fraction of the canvas, its half-size at scale 1 (same fraction), and the phrase
# captions use for the position (public: ``scenes`` draws and describes its objects with them).
RADIUS = 0.17
CENTRES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "What shape is it?",
    "position": "Where is the shape?",
}
CAPTION_TEMPLATES = (
    "A {colour} {shape} {where}.",
    "There is a {colour} {shape} {where} of the image.",
    "A {shape} in {colour} {where}.",
    "The {colour} {shape} is {where}.",
    "A small {colour} {shape} {where} on a white background.",
)
BACKGROUND = (255, 255, 255)

Combo = tuple[str, str, str]  # (colour, shape, position)
ALL_COMBOS: tuple[Combo, ...] = tuple(itertools.product(COLOURS, SHAPES, POSITIONS))


def check(name: str, value: str, valid) -> None:
    """Refuse ``value`` unless it is one of ``valid``, naming them (shared with ``scenes``)."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class PlacedShape:
    """One shape of one colour at one of ``PLACES``. ``scale`` and the offsets (fractions of the canvas)
    vary the drawing without changing any answer (shared with ``scenes.SceneObject``)."""

    PLACES: ClassVar[tuple[str, ...]] = POSITIONS

    colour: str
    shape: str
    position: str
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def __post_init__(self) -> None:
        check("colour", self.colour, COLOURS)
        check("shape", self.shape, SHAPES)
        check("position", self.position, self.PLACES)
        if not 0.5 <= self.scale <= 1.5 or max(abs(self.dx), abs(self.dy)) > 0.08:
            raise ValueError(f"scale must be in [0.5, 1.5] and |dx|, |dy| <= 0.08, got {self}")


@dataclass(frozen=True)
class ShapeSpec(PlacedShape):
    """What one image shows: offsets stay well inside the shape's half of the canvas."""

    @property
    def combo(self) -> Combo:
        return (self.colour, self.shape, self.position)

    def answer(self, kind: str) -> str:
        """The one-word answer to the question of ``kind`` (colour, shape or position)."""
        check("question kind", kind, QUESTION_KINDS)
        return getattr(self, kind)

    def captions(self) -> list[str]:
        """Five reference captions, all built from the same words."""
        words = {"colour": self.colour, "shape": self.shape, "where": WHERE[self.position]}
        return [template.format(**words) for template in CAPTION_TEMPLATES]


def question(kind: str) -> str:
    """The question text for ``kind`` (colour, shape or position)."""
    check("question kind", kind, QUESTION_KINDS)
    return _QUESTIONS[kind]


def vocabulary(kind: str) -> tuple[str, ...]:
    """Every possible answer to a question of ``kind``."""
    check("question kind", kind, QUESTION_KINDS)
    return {"colour": tuple(COLOURS), "shape": SHAPES, "position": POSITIONS}[kind]


def paint(pen: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """Draw ``shape`` of half-size ``r`` centred at (``cx``, ``cy``) pixels with ``pen`` (shared with ``scenes``)."""
    box = (round(cx - r), round(cy - r), round(cx + r), round(cy + r))
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(box[0], box[3]), (box[2], box[3]), (round(cx), box[1])], fill=fill)


def draw(spec: ShapeSpec, size: int = 64) -> Image.Image:
    """The RGB image of ``spec`` on a ``size`` x ``size`` white canvas (pure: same spec, same pixels)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    fx, fy = CENTRES[spec.position]
    r = RADIUS * size * spec.scale
    paint(ImageDraw.Draw(image), spec.shape, (fx + spec.dx) * size, (fy + spec.dy) * size, r, COLOURS[spec.colour])
    return image


def split_combos(n_held_out: int, seed: int) -> tuple[tuple[Combo, ...], tuple[Combo, ...]]:
    """(train, held-out): ``n_held_out`` combinations chosen by ``seed`` never appear in train."""
    if not 0 <= n_held_out < len(ALL_COMBOS):
        raise ValueError(f"n_held_out must be in [0, {len(ALL_COMBOS) - 1}], got {n_held_out}")
    held_out = set(random.Random(seed).sample(ALL_COMBOS, n_held_out))
    return tuple(c for c in ALL_COMBOS if c not in held_out), tuple(c for c in ALL_COMBOS if c in held_out)


def sample_specs(n: int, seed: int, combos: tuple[Combo, ...] = ALL_COMBOS, jitter: bool = False) -> list[ShapeSpec]:
    """``n`` specs drawn by ``seed``: passes over ``combos``, each pass in a fresh shuffled order, so the
    first ``len(combos)`` specs are all distinct and larger ``n`` stays balanced. ``jitter`` varies size
    and offset per spec (for training data); without it every spec is drawn at its canonical place."""
    if n < 0 or not combos:
        raise ValueError(f"need n >= 0 and at least one combination, got n={n}, {len(combos)} combinations")
    rng = random.Random(seed)
    specs: list[ShapeSpec] = []
    while len(specs) < n:
        for colour, shape, position in rng.sample(combos, len(combos)):
            if len(specs) == n:
                break
            if jitter:
                scale, dx, dy = rng.uniform(0.7, 1.3), rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
                specs.append(ShapeSpec(colour, shape, position, scale=scale, dx=dx, dy=dy))
            else:
                specs.append(ShapeSpec(colour, shape, position))
    return specs


def annotator_answers(
    truth: str, words: tuple[str, ...], rng: random.Random, n: int = 10, max_noise: int = 3
) -> list[str]:
    """``n`` answers as VQA annotators would give them: ``truth``, except for up to ``max_noise`` (drawn by
    ``rng``) other ``words`` of the question's vocabulary, so a wrong answer can earn partial credit as in
    VQAv2 while the truth stays the clear majority."""
    others = [word for word in words if word != truth]
    if not 0 <= max_noise < n / 2:
        raise ValueError(f"max_noise must be in [0, {n / 2}) so that the truth stays the majority, got {max_noise}")
    noise = [rng.choice(others) for _ in range(rng.randint(0, max_noise))]
    answers = [truth] * (n - len(noise)) + noise
    rng.shuffle(answers)
    return answers
