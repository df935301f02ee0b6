"""Task data: the shapes world, the packaged smoke data, the paper's VQAv2 subset, local copies through
``NARROWGATE_DATA_DIR``, and the task YAMLs as lmms-eval loads them."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from narrowgate_tasks import make_smoke_data, shapes, sources, utils
from narrowgate_tasks.prompts import CAPTION_REQUEST, vqa_request

TASK_DIR = str(Path(utils.__file__).parent)
TASKS = [
    "narrowgate_vqav2",
    "narrowgate_vqav2_full",
    "narrowgate_coco_cap",
    "narrowgate_coco_cap_full",
    "narrowgate_flickr30k",
    "narrowgate_flickr30k_full",
    "narrowgate_smoke_vqa",
    "narrowgate_smoke_caption",
    "narrowgate_vqav2_instruction",
    "narrowgate_vqav2_full_instruction",
    "narrowgate_smoke_vqa_instruction",
    "narrowgate_scenes_single_vqa",
    "narrowgate_scenes_aggregation_vqa",
]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def load_tasks(names: list[str]) -> dict:
    from lmms_eval.tasks import TaskManager, get_task_dict

    return get_task_dict(names, TaskManager(include_path=TASK_DIR, include_defaults=False))


def docs_of(task) -> datasets.Dataset:
    return task.test_docs() if task.has_test_docs() else task.validation_docs()


# -------------------------------------------------------------------------------------------- shapes


def test_draw_is_pure_and_puts_the_shape_where_it_says():
    for colour, shape, position in shapes.ALL_COMBOS:
        spec = shapes.ShapeSpec(colour, shape, position)
        image = pixels(shapes.draw(spec, 64))
        assert np.array_equal(image, pixels(shapes.draw(spec, 64)))
        fx, fy = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}[position]
        assert tuple(image[int(fy * 64) + 3, int(fx * 64)]) == shapes.COLOURS[colour]  # just below the centre
        assert tuple(image[int((1 - fy) * 64), int((1 - fx) * 64)]) == shapes.BACKGROUND  # the opposite side
    circle, square = (pixels(shapes.draw(shapes.ShapeSpec("red", s, "left"))) for s in ("circle", "square"))
    assert not np.array_equal(circle, square)


def test_specs_generator_is_seeded_balanced_and_holds_combinations_out():
    first = shapes.sample_specs(48, seed=3)
    assert first == shapes.sample_specs(48, seed=3) != shapes.sample_specs(48, seed=4)
    assert {s.combo for s in first} == set(shapes.ALL_COMBOS)  # one pass: every combination once
    many = shapes.sample_specs(480, seed=1, jitter=True)
    assert set(np.unique([s.combo for s in many], axis=0, return_counts=True)[1]) == {10}
    assert len({(s.scale, s.dx) for s in many}) == 480
    train, held_out = shapes.split_combos(8, seed=0)
    assert len(held_out) == 8 and not set(train) & set(held_out) and len(train) + 8 == len(shapes.ALL_COMBOS)
    assert {s.combo for s in shapes.sample_specs(200, seed=0, combos=train)} == set(train)
    spec = shapes.ShapeSpec("blue", "triangle", "top")
    assert [spec.answer(k) for k in shapes.QUESTION_KINDS] == ["blue", "triangle", "top"]
    assert all("blue triangle" in c or "triangle in blue" in c for c in spec.captions())
    with pytest.raises(ValueError, match="unknown colour 'purple'; valid: red, green, blue, yellow"):
        shapes.ShapeSpec("purple", "circle", "left")


# ---------------------------------------------------------------------------------------- smoke data


def test_smoke_data_regenerates_identically_and_is_small():
    shipped = {name: sources.load_packaged(name) for name in ("vqa", "caption")}
    for name, fresh in zip(("vqa", "caption"), make_smoke_data.smoke_datasets()):
        old = shipped[name]
        assert old.features == fresh.features and len(old) == len(fresh) == 32
        assert old.remove_columns("image").to_list() == fresh.remove_columns("image").to_list()
        for a, b in zip(old["image"], fresh["image"]):
            assert np.array_equal(pixels(a), pixels(b))
    assert sum(p.stat().st_size for p in (sources.PACKAGE_DATA).rglob("*") if p.is_file()) <= 1_000_000


def test_smoke_data_matches_its_shapes():
    specs = shapes.sample_specs(make_smoke_data.N_IMAGES, seed=make_smoke_data.SEED)
    assert len({s.combo for s in specs}) == 32
    vqa, caption = sources.load_packaged("vqa"), sources.load_packaged("caption")
    for i, spec in enumerate(specs):
        row = vqa[i]
        kind = shapes.QUESTION_KINDS[i % 3]
        assert row["question"] == shapes.question(kind) and row["multiple_choice_answer"] == spec.answer(kind)
        assert [a["answer_id"] for a in row["answers"]] == list(range(1, 11))
        assert [a["answer"] for a in row["answers"]].count(spec.answer(kind)) >= 7
        assert np.array_equal(pixels(row["image"]), pixels(shapes.draw(spec, make_smoke_data.IMAGE_SIZE)))
        assert caption[i]["caption"] == spec.captions()


# ------------------------------------------------------------------------------------- VQAv2 subset


def test_vqav2_subset_is_the_seed_42_sample():
    n = utils.VQAV2_VALIDATION_ROWS
    ds = datasets.Dataset.from_dict({"question_id": [7 * i + 3 for i in range(n)]})
    saved = random.getstate()
    try:  # the authors' lines, verbatim in effect
        random.seed(42)
        all_idxs = [i for i in range(n)]
        idxs = random.sample(all_idxs, 2000)
    finally:
        random.setstate(saved)
    subset = utils.select_paper_vqav2(ds)
    assert subset["question_id"][:] == [7 * i + 3 for i in idxs]
    with pytest.raises(ValueError, match="214354 questions.*has 214353 rows"):
        utils.paper_vqav2_indices(n - 1)


def test_vqav2_task_reads_a_local_copy(tmp_path, monkeypatch):
    n = utils.VQAV2_VALIDATION_ROWS
    copy = datasets.Dataset.from_dict({"question_id": list(range(n))})
    copy.save_to_disk(str(tmp_path / "lmms-lab" / "VQAv2" / "validation"))
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path))
    docs = utils.vqav2_docs(None)
    assert docs["question_id"][:] == utils.paper_vqav2_indices(n)


# --------------------------------------------------------------------------------------- local copies


def test_local_copy_layouts_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path))
    source = sources.Source("someone/data", "test")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/someone/data/test does not exist"):
        sources.load_source(source)
    shards = source.local_dir(tmp_path) / "TEST" / "test"  # the layout of a hub parquet export
    shards.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="neither a save_to_disk dataset"):
        sources.load_source(source)
    for i, rows in reversed(list(enumerate(([0, 1], [2], [3, 4])))):  # read in path order, not write order
        datasets.Dataset.from_dict({"x": rows}).to_parquet(str(shards / f"{i:04d}.parquet"))
    assert sources.load_source(source)["x"][:] == [0, 1, 2, 3, 4]


def caption_copies(root: Path) -> list[int]:
    """Local copies of the three caption sources built from the smoke captions; returns the COCO ids."""
    smoke = sources.load_packaged("caption")
    smoke.to_parquet(str(root / "nlphuji" / "flickr30k" / "test" / "TEST" / "test" / "0000.parquet"))
    coco_ids = [1000 + 37 * i for i in range(len(smoke))]
    rows = datasets.Dataset.from_dict(
        {
            "cocoid": coco_ids,
            "sentences": smoke["caption"][:],
            "filename": [f"COCO_val2014_{i:012d}.jpg" for i in coco_ids],
        }
    )
    rows.save_to_disk(str(root / "yerevann" / "coco-karpathy" / "test"))
    order = list(range(len(smoke)))
    random.Random(0).shuffle(order)  # the image source has its own order, and images the task does not use
    images = smoke.select(order + [0]).select_columns(["image"])
    names = [f"COCO_val2014_{coco_ids[i]:012d}.jpg" for i in order] + ["COCO_val2014_000000000001.jpg"]
    images.add_column("question_id", names).save_to_disk(str(root / "lmms-lab" / "COCO-Caption" / "val"))
    return coco_ids


def test_tasks_run_on_local_copies(tmp_path, monkeypatch):
    coco_ids = caption_copies(tmp_path)
    sources.load_packaged("vqa").save_to_disk(str(tmp_path / "lmms-lab" / "VQAv2" / "validation"))
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path))
    tasks = load_tasks(["narrowgate_vqav2_full", "narrowgate_coco_cap_full", "narrowgate_flickr30k_full"])
    smoke_vqa, smoke_caption = sources.load_packaged("vqa"), sources.load_packaged("caption")

    vqa = docs_of(tasks["narrowgate_vqav2_full"])
    assert vqa.remove_columns("image").to_list() == smoke_vqa.remove_columns("image").to_list()
    for name in ("narrowgate_coco_cap_full", "narrowgate_flickr30k_full"):
        docs = docs_of(tasks[name])
        assert docs.column_names == ["image", "refs", "image_id", "cider_corpus"]
        assert docs["refs"][:] == smoke_caption["caption"][:]
        for doc, smoke in zip(docs, smoke_caption):  # every image joined to its own captions
            assert np.array_equal(pixels(doc["image"]), pixels(smoke["image"]))
    assert docs_of(tasks["narrowgate_coco_cap_full"])["image_id"][:] == coco_ids
    assert docs_of(tasks["narrowgate_flickr30k_full"])["image_id"][:] == smoke_caption["img_id"][:]

    with pytest.raises(ValueError, match="first 2000 rows, but this copy has only 32"):
        utils.flickr30k_docs(None)
    with pytest.raises(ValueError, match="214354 questions.*has 32 rows"):
        utils.vqav2_docs(None)


def test_coco_join_names_missing_images(tmp_path, monkeypatch):
    coco_ids = caption_copies(tmp_path)
    folder = tmp_path / "lmms-lab" / "COCO-Caption" / "val"
    images = datasets.load_from_disk(str(folder))
    images.filter(lambda name: str(coco_ids[3]) not in name, input_columns="question_id").save_to_disk(
        str(tmp_path / "fewer")
    )
    del images
    shutil.rmtree(folder)
    (tmp_path / "fewer").rename(folder)
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path))
    with pytest.raises(
        ValueError, match=rf"1 Karpathy test images are not in lmms-lab/COCO-Caption.*\[{coco_ids[3]}\]"
    ):
        utils.coco_cap_full_docs(None)


# ------------------------------------------------------------------------------------------- YAMLs


def test_yamls_index_every_task_and_the_group():
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(include_path=TASK_DIR, include_defaults=False)
    assert sorted(manager.all_subtasks) == sorted(TASKS)
    assert manager.all_groups == ["narrowgate"]
    group = manager._get_config("narrowgate")
    assert group["task"] == ["narrowgate_vqav2", "narrowgate_coco_cap", "narrowgate_flickr30k"]
    for name in TASKS:
        config = manager._get_config(name)
        kind = "vqa" if "vqa" in name else "caption"
        assert config["process_docs"].__name__ == name.removeprefix("narrowgate_") + "_docs"
        assert config["generation_kwargs"] == {
            "max_new_tokens": 20 if kind == "vqa" else 60,
            "do_sample": False,
            "temperature": 0,
            "num_beams": 1,
            "until": [],
        }
        metric_names = [m["metric"] for m in config["metric_list"]]
        assert metric_names == (
            ["vqa_accuracy"]
            if kind == "vqa"
            else ["cider_paper", "cider_ptb", "bleu4_ptb", "meteor_ptb", "rouge_l_ptb"]
        )


def test_smoke_tasks_docs_visuals_and_targets():
    tasks = load_tasks(["narrowgate_smoke_vqa", "narrowgate_smoke_caption"])
    specs = shapes.sample_specs(make_smoke_data.N_IMAGES, seed=make_smoke_data.SEED)
    vqa, caption = tasks["narrowgate_smoke_vqa"], tasks["narrowgate_smoke_caption"]
    vqa_docs, caption_docs = docs_of(vqa), docs_of(caption)
    assert len(vqa_docs) == len(caption_docs) == 32
    for i, spec in enumerate(specs):
        drawn = pixels(shapes.draw(spec, make_smoke_data.IMAGE_SIZE))
        kind = shapes.QUESTION_KINDS[i % 3]
        doc = vqa_docs[i]
        assert vqa.doc_to_text(doc) == vqa_request(shapes.question(kind))
        assert vqa.doc_to_target(doc) == spec.answer(kind)
        (visual,) = vqa.doc_to_visual(doc)
        assert visual.mode == "RGB" and np.array_equal(pixels(visual), drawn)
        doc = caption_docs[i]
        assert caption.doc_to_text(doc) == CAPTION_REQUEST
        assert caption.doc_to_target(doc) == spec.captions()
        (visual,) = caption.doc_to_visual(doc)
        assert np.array_equal(pixels(visual), drawn)
    with pytest.raises(ValueError, match="question_id=5 has no image"):
        utils.doc_to_visual({"question_id": 5, "image": None})
