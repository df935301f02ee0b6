"""Write the packaged scenes smoke data: ``python -m narrowgate_tasks.make_scenes_data [--out DIR]``.

For each question set of ``scenes`` (single, aggregation), 48 textured scenes (``smoke_specs``: canonical
places and sizes, textures fixed by the seed), one question each with kinds rotating through the set,
10 annotator answers, in the VQAv2 schema of ``make_smoke_data`` -> ``<question set>.parquet``. The
output is a pure function of the constants below; a test regenerates it and compares.
"""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset

from narrowgate_tasks import scenes, shapes
from narrowgate_tasks.make_smoke_data import IMAGE_SIZE, png, run, save, vqa_dataset

SEED = 0
N_IMAGES = 48
OUT_DIR = Path(__file__).parent / "data" / "scenes"


def smoke_specs(questions: str) -> list[scenes.SceneSpec]:
    """The specs of the rows of ``<questions>.parquet``, in order (so that training can leave them out)."""
    return scenes.sample_specs(N_IMAGES, seed=SEED, questions=questions)


def scenes_dataset(questions: str) -> Dataset:
    """The VQA smoke dataset of ``questions``, built from the constants above only."""
    kinds = scenes.QUESTION_SETS[questions]
    rng = random.Random(SEED)
    rows = []
    for i, spec in enumerate(smoke_specs(questions)):
        kind = kinds[i % len(kinds)]
        answers = shapes.annotator_answers(spec.answer(kind), scenes.vocabulary(kind), rng)
        rows.append((kind, scenes.question(kind), answers, png(scenes.draw(spec, IMAGE_SIZE))))
    return vqa_dataset(rows)


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write one ``<question set>.parquet`` per question set into ``out_dir``; returns their paths."""
    return save({questions: scenes_dataset(questions) for questions in scenes.QUESTION_SETS}, out_dir)


def main(argv: list[str] | None = None) -> None:
    run(__doc__, OUT_DIR, write, argv)


if __name__ == "__main__":
    main()
