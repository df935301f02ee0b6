"""Write the packaged smoke data: ``python -m narrowgate_tasks.make_smoke_data [--out DIR]``.

32 images of coloured shapes (``shapes.sample_specs(32, seed=0)``: 32 distinct colour/shape/position
triples), PNG bytes embedded in parquet, in the schemas of the real tasks' sources so the same loading
and scoring code runs on them:

- ``vqa.parquet``: one question per image in the schema of ``lmms-lab/VQAv2`` (question_id, question,
  answers = 10 x {answer, answer_confidence, answer_id}, multiple_choice_answer, image_id, ...);
  question kinds rotate colour, shape, position.
- ``caption.parquet``: five captions per image in the schema of ``nlphuji/flickr30k`` (image, caption,
  sentids, split, img_id, filename).

The output is a pure function of the constants below; a test regenerates it and compares.
"""

from __future__ import annotations

import argparse
import io
import random
from collections import Counter
from pathlib import Path

import PIL.Image
from datasets import Dataset, Features, Image, List, Value

from narrowgate_tasks import shapes

SEED = 0
N_IMAGES = 32
IMAGE_SIZE = 64
OUT_DIR = Path(__file__).parent / "data" / "smoke"

VQA_FEATURES = Features(
    {
        "question_type": Value("string"),
        "multiple_choice_answer": Value("string"),
        "answers": List({"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}),
        "image_id": Value("int64"),
        "answer_type": Value("string"),
        "question_id": Value("int64"),
        "question": Value("string"),
        "image": Image(),
    }
)
CAPTION_FEATURES = Features(
    {
        "image": Image(),
        "caption": List(Value("string")),
        "sentids": List(Value("string")),
        "split": Value("string"),
        "img_id": Value("string"),
        "filename": Value("string"),
    }
)


def png(image: PIL.Image.Image) -> dict:
    """``image`` as the PNG bytes a parquet ``Image`` column stores."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def vqa_dataset(rows: list[tuple[str, str, list[str], dict]]) -> Dataset:
    """A VQAv2-schema dataset of (question kind, question, annotator answers, png) rows, row i being
    image ``i`` and question ``1000 * i``."""
    vqa: dict[str, list] = {name: [] for name in VQA_FEATURES}
    for i, (kind, text, answers, image) in enumerate(rows):
        vqa["question_type"].append(kind)
        vqa["multiple_choice_answer"].append(Counter(answers).most_common(1)[0][0])
        vqa["answers"].append(
            [
                {"answer": answer, "answer_confidence": "yes", "answer_id": answer_id}
                for answer_id, answer in enumerate(answers, 1)
            ]
        )
        vqa["image_id"].append(i)
        vqa["answer_type"].append("other")
        vqa["question_id"].append(i * 1000)
        vqa["question"].append(text)
        vqa["image"].append(image)
    return Dataset.from_dict(vqa, features=VQA_FEATURES)


def smoke_datasets() -> tuple[Dataset, Dataset]:
    """(vqa, caption) smoke datasets, built from ``SEED``, ``N_IMAGES`` and ``IMAGE_SIZE`` only."""
    specs = shapes.sample_specs(N_IMAGES, seed=SEED)
    rng = random.Random(SEED)
    rows = []
    caption: dict[str, list] = {name: [] for name in CAPTION_FEATURES}
    for i, spec in enumerate(specs):
        image = png(shapes.draw(spec, IMAGE_SIZE))
        kind = shapes.QUESTION_KINDS[i % len(shapes.QUESTION_KINDS)]
        answers = shapes.annotator_answers(spec.answer(kind), shapes.vocabulary(kind), rng)
        rows.append((kind, shapes.question(kind), answers, image))

        captions = spec.captions()
        caption["image"].append(image)
        caption["caption"].append(captions)
        caption["sentids"].append([str(5 * i + k) for k in range(len(captions))])
        caption["split"].append("test")
        caption["img_id"].append(str(i))
        caption["filename"].append(f"shapes_{i:03d}.png")
    return vqa_dataset(rows), Dataset.from_dict(caption, features=CAPTION_FEATURES)


def save(datasets: dict[str, Dataset], out_dir: Path) -> list[Path]:
    """Write each dataset to ``out_dir/<name>.parquet`` atomically; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, dataset in datasets.items():
        path = out_dir / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        dataset.to_parquet(str(tmp))
        tmp.replace(path)
        paths.append(path)
    return paths


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write ``vqa.parquet`` and ``caption.parquet`` into ``out_dir``; returns their paths."""
    return save(dict(zip(("vqa", "caption"), smoke_datasets())), out_dir)


def run(description: str, out_dir: Path, write_to, argv: list[str] | None) -> None:
    """The command line of a data writer: ``--out DIR`` (default ``out_dir``), then ``write_to(DIR)``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=out_dir, help=f"output folder (default: {out_dir})")
    for path in write_to(parser.parse_args(argv).out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> None:
    run(__doc__, OUT_DIR, write, argv)


if __name__ == "__main__":
    main()
