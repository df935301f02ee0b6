"""What the analyses look at: labelled images, the question whose answer is each label, captions.

``shapes`` (the default, embedded): the toy's evaluation drawings (never trained on), labelled by
colour, shape and position, each label with its question. ``scenes_single`` and ``scenes_aggregation``
(embedded): the same for the textured scenes world (``narrowgate_tasks.scenes``) and its question set. Real data comes from ``$NARROWGATE_DATA_DIR``
(the same switch as the tasks'; a missing copy is an error, never a download):

- ``folder:NAME``: ``$NARROWGATE_DATA_DIR/NAME/<label>/<image files>`` (the ImageNet folder layout), one
  label kind ``class`` asked with ``CLASS_QUESTION``; for overlap, patching, locate and progressive.
- ``flickr30k``: the tasks' Flickr30k copy (``nlphuji/flickr30k`` test, see ``narrowgate_tasks.sources``),
  images with their first caption and no labels; for the modality gap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from narrowgate_tasks import scenes
from narrowgate_tasks.sources import ENV_VAR, FLICKR30K_TEST, load_local

CLASS_QUESTION = "What is in the image?"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Examples:
    """n images with their labels (kind -> one value per image), the question of each label kind and
    one caption per image (None where the data has none)."""

    name: str
    images: tuple[Image.Image, ...]
    labels: dict[str, tuple[str, ...]]
    questions: dict[str, str]
    captions: tuple[str, ...] | None

    def __len__(self) -> int:
        return len(self.images)

    def require_labels(self, analysis: str) -> None:
        if not self.labels:
            raise ValueError(
                f"{analysis} needs labelled images, but data {self.name!r} has none; use {', '.join(TOY_WORLDS)} or folder:NAME"
            )


def load_examples(data: str, n: int) -> Examples:
    """``n`` examples of ``data`` (``shapes``, ``scenes_single``, ``scenes_aggregation``, ``folder:NAME`` or ``flickr30k``)."""
    if n < 2:
        raise ValueError(f"need at least 2 examples, got n={n}")
    if data in TOY_WORLDS:
        return _toy_world(data, n)
    if data.startswith("folder:"):
        return _folder(data, data.removeprefix("folder:"), n)
    if data == "flickr30k":
        return _flickr30k(n)
    raise ValueError(f"unknown data {data!r}; valid: {', '.join(TOY_WORLDS)}, folder:NAME (under ${ENV_VAR}), flickr30k")


# the toy worlds' evaluation drawings: data name -> (world, question set) of narrowgate.toy.World
TOY_WORLDS = {"shapes": ("shapes", "single"), **{f"scenes_{q}": ("scenes", q) for q in scenes.QUESTION_SETS}}


def _toy_world(data: str, n: int) -> Examples:
    from narrowgate.toy import World, eval_specs

    world = World(*TOY_WORLDS[data])
    seen, held_out = eval_specs("seen", world), eval_specs("held_out", world)
    specs = [spec for pair in zip(seen, held_out) for spec in pair]  # both splits in every prefix
    if n > len(specs):
        raise ValueError(f"the {data} data has {len(specs)} evaluation drawings; got n={n}")
    specs = specs[:n]
    return Examples(
        name=data,
        images=tuple(world.draw(spec) for spec in specs),
        labels={kind: tuple(spec.answer(kind) for spec in specs) for kind in world.kinds},
        questions={kind: world.question(kind) for kind in world.kinds},
        captions=tuple(spec.captions()[0] for spec in specs),
    )


def _root(data: str) -> Path:
    root = os.environ.get(ENV_VAR)
    if not root:
        raise FileNotFoundError(f"data {data!r} is read from ${ENV_VAR}, which is not set (see narrowgate.analyses.data)")
    return Path(root)


def _folder(data: str, name: str, n: int) -> Examples:
    folder = _root(data) / name
    layout = f"{folder}/<label>/<image files ({', '.join(IMAGE_SUFFIXES)})>"
    if not name or not folder.is_dir():
        raise FileNotFoundError(f"data {data!r}: {folder} does not exist; expected {layout}")
    per_label = {
        label.name: sorted(p for p in label.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for label in sorted(folder.iterdir())
        if label.is_dir()
    }
    per_label = {label: files for label, files in per_label.items() if files}
    if len(per_label) < 2:
        raise FileNotFoundError(f"data {data!r}: found {len(per_label)} label folder(s) with images in {folder}; expected {layout} with >= 2 labels")
    # round robin over the labels, so every prefix of the examples is balanced
    files = [(label, per_label[label][i]) for i in range(max(map(len, per_label.values()))) for label in per_label if i < len(per_label[label])]
    files = files[:n]
    return Examples(
        name=data,
        images=tuple(Image.open(path).convert("RGB") for _, path in files),
        labels={"class": tuple(label for label, _ in files)},
        questions={"class": CLASS_QUESTION},
        captions=None,
    )


def _flickr30k(n: int) -> Examples:
    rows = load_local(FLICKR30K_TEST, _root("flickr30k"))
    rows = rows.select(range(min(n, len(rows))))
    return Examples(
        name="flickr30k",
        images=tuple(row["image"].convert("RGB") for row in rows),
        labels={},
        questions={},
        captions=tuple(row["caption"][0] for row in rows),
    )
