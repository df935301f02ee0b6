"""The scenes world: pure textured drawings, answers that follow from the objects, balanced seeded
sampling with held-out combinations, words the tiny tokenizer knows, its packaged smoke data and tasks
through lmms-eval, and the property it exists for: a small patch does not give the colour away."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from narrowgate_tasks import make_scenes_data, scenes, shapes, sources, utils
from narrowgate_tasks.make_smoke_data import IMAGE_SIZE

PALETTE = np.array(list(shapes.COLOURS.values()), dtype=float)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def specs_of_every_kind(seed: int = 0) -> list[scenes.SceneSpec]:
    specs = []
    for questions in scenes.QUESTION_SETS:
        for jitter in (False, True):
            specs += scenes.sample_specs(40, seed, questions, jitter=jitter)
    return specs


def test_draw_is_pure_and_textured():
    for spec in specs_of_every_kind():
        image = pixels(scenes.draw(spec))
        assert image.tobytes() == pixels(scenes.draw(spec)).tobytes()
        other = scenes.SceneSpec(spec.objects, texture=spec.texture + 1)
        assert not np.array_equal(image, pixels(scenes.draw(other)))
        inside = np.zeros(image.shape[:2], bool)
        for obj in spec.objects:
            where = scenes.mask(obj)
            assert not (inside & where).any()  # objects never overlap
            inside |= where
            colours = [tuple(p) for p in image[where]]
            assert set(colours) <= set(shapes.COLOURS.values())
            own = colours.count(shapes.COLOURS[obj.colour]) / len(colours)
            sigma = np.sqrt(scenes.OWN_COLOUR * (1 - scenes.OWN_COLOUR) / len(colours))
            assert abs(own - scenes.OWN_COLOUR) < 4 * sigma, (obj, own)
        background = image[~inside]
        assert (background[:, 0] == background[:, 1]).all() and (background[:, 1] == background[:, 2]).all()
        assert set(np.unique(background)) == {255 - scenes.BACKGROUND_STEP * k for k in range(5)}


def test_objects_stay_where_they_are_said_to_be():
    for spec in specs_of_every_kind(seed=1):
        for obj in spec.objects:
            ys, xs = np.nonzero(scenes.mask(obj))
            fx, fy = obj.centre  # the drawn box is centred there
            box_centre = ((xs.min() + xs.max() + 1) / 128, (ys.min() + ys.max() + 1) / 128)
            assert max(abs(box_centre[0] - fx), abs(box_centre[1] - fy)) <= 1 / 64, obj
            qx, qy = {**shapes.CENTRES, **scenes.QUADRANTS}[obj.position]
            assert max(abs(fx - qx), abs(fy - qy)) <= 0.08
            if obj.position in scenes.QUADRANTS:  # wholly inside its quadrant
                assert ((xs < 32) == (qx < 0.5)).all() and ((ys < 32) == (qy < 0.5)).all(), obj


def test_answers_follow_from_the_objects():
    seen = set()
    for spec in specs_of_every_kind(seed=2):
        if spec.questions == "single":
            (obj,) = spec.objects
            answers = tuple(spec.answer(k) for k in shapes.QUESTION_KINDS)
            assert spec.combo == (obj.colour, obj.shape, obj.position) == answers
            assert spec.captions() == shapes.ShapeSpec(obj.colour, obj.shape, obj.position).captions()
            continue
        counts = Counter(o.colour for o in spec.objects)
        (top, n), *rest = counts.most_common()
        assert n > len(spec.objects) / 2  # a strict majority
        expected = (["two", "three", "four"][len(spec.objects) - 2], top, "yes" if not rest else "no")
        assert spec.combo == expected == tuple(spec.answer(k) for k in ("count", "majority", "alike"))
        assert len({o.position for o in spec.objects}) == len(spec.objects)
        captions = spec.captions()
        assert len(captions) == 5 and all(expected[0] in c.lower() and top in c for c in captions)
        seen.add(spec.combo)
    assert seen == set(scenes.all_combos("aggregation"))
    with pytest.raises(ValueError, match="no colour holds a strict majority"):
        colours = ("red", "red", "blue", "blue")
        scenes.SceneSpec(tuple(scenes.SceneObject(c, "circle", q) for c, q in zip(colours, scenes.QUADRANTS)), 0)
    with pytest.raises(ValueError, match="unknown question kind of a single scene 'count'"):
        scenes.sample_specs(1, 0, "single")[0].answer("count")
    with pytest.raises(ValueError, match="an object in a quadrant must stay inside it"):
        scenes.SceneObject("red", "circle", "top left", scale=1.5)


def test_sampling_is_seeded_balanced_and_holds_combinations_out():
    for questions in scenes.QUESTION_SETS:
        combos = scenes.all_combos(questions)
        assert len(combos) == {"single": 48, "aggregation": 20}[questions]
        first = scenes.sample_specs(len(combos), 3, questions)
        assert first == scenes.sample_specs(len(combos), 3, questions) != scenes.sample_specs(len(combos), 4, questions)
        assert sorted(s.combo for s in first) == sorted(combos)  # one pass: every combination once
        many = scenes.sample_specs(10 * len(combos), 1, questions, jitter=True)
        assert set(Counter(s.combo for s in many).values()) == {10}
        assert len({s.texture for s in many}) == len(many) and len({s.objects for s in many}) == len(many)
        train, held_out = scenes.split_combos(questions, 5, seed=0)
        assert len(held_out) == 5 and not set(train) & set(held_out) and len(train) + 5 == len(combos)
        specs = scenes.sample_specs(400, 0, questions, combos=train, jitter=True)
        assert {s.combo for s in specs} == set(train) and not {s.combo for s in specs} & set(held_out)
    with pytest.raises(ValueError, match="unknown"):
        scenes.sample_specs(3, 0, "aggregation", combos=(("two", "red", "no"),))


def test_every_word_is_known_to_the_tiny_tokenizer():
    from narrowgate.tiny import BUILDERS

    _, processor = BUILDERS["chameleon"]()
    tokenizer = processor.tokenizer
    texts = {scenes.question(k) for ks in scenes.QUESTION_SETS.values() for k in ks}
    texts |= {w for ks in scenes.QUESTION_SETS.values() for k in ks for w in scenes.vocabulary(k)}
    for questions in scenes.QUESTION_SETS:
        for combo in scenes.all_combos(questions):
            (spec,) = scenes.sample_specs(1, 0, questions, combos=(combo,))
            texts |= set(spec.captions())
    assert len(texts) > 100
    for text in sorted(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids, f"{text!r} -> {tokenizer.convert_ids_to_tokens(ids)}"
    assert tokenizer.unk_token_id in tokenizer("purplish", add_special_tokens=False)["input_ids"]  # the check bites


def patch_colour_accuracy(images: list[np.ndarray], masks: list[np.ndarray], colours: list[str], patch: int) -> float:
    """Fraction of the patches wholly inside an object whose mean colour is nearest to the object's colour."""
    hits = []
    for image, mask, colour in zip(images, masks, colours):
        n = image.shape[0] // patch
        means = image.reshape(n, patch, n, patch, 3).mean(axis=(1, 3)).reshape(-1, 3)
        inside = mask.reshape(n, patch, n, patch).all(axis=(1, 3)).reshape(-1)
        nearest = np.linalg.norm(means[inside][:, None] - PALETTE[None], axis=2).argmin(axis=1)
        hits.extend(nearest == list(shapes.COLOURS).index(colour))
    return float(np.mean(hits))


def test_a_small_patch_does_not_give_the_colour_away():
    """Nearest-palette accuracy of object patches' mean colours, shapes vs scenes, at 64 px and resized
    (box filter) to 32 px: on flat shapes every object patch names the colour; on scenes far fewer do."""
    specs = scenes.sample_specs(96, 5, "single", jitter=True)
    measured = {}
    for size in (64, 32):
        for patch in (2, 4):
            row = {}
            for world in ("shapes", "scenes"):
                images, masks, colours = [], [], []
                for spec in specs:
                    (obj,) = spec.objects
                    flat = shapes.ShapeSpec(obj.colour, obj.shape, obj.position, obj.scale, obj.dx, obj.dy)
                    image = shapes.draw(flat) if world == "shapes" else scenes.draw(spec)
                    mask = scenes.mask(obj)
                    if size == 32:
                        image, mask = image.resize((32, 32), Image.BOX), mask.reshape(32, 2, 32, 2).all(axis=(1, 3))
                    images.append(pixels(image).astype(float))
                    masks.append(mask)
                    colours.append(obj.colour)
                row[world] = patch_colour_accuracy(images, masks, colours, patch)
            measured[(size, patch)] = row
    print("nearest-palette accuracy of object patches' mean colour (size px, patch px): shapes, scenes")
    for (size, patch), row in measured.items():
        print(f"  {size} px, {patch}x{patch}: shapes {row['shapes']:.3f}, scenes {row['scenes']:.3f}")
    assert all(row["shapes"] == 1.0 for row in measured.values())
    assert measured[(64, 2)]["scenes"] < 0.8
    assert all(row["scenes"] < row["shapes"] for row in measured.values())


def test_smoke_data_regenerates_identically_and_matches_its_specs():
    for questions in scenes.QUESTION_SETS:
        shipped, fresh = sources.load_packaged(questions, folder="scenes"), make_scenes_data.scenes_dataset(questions)
        assert shipped.features == fresh.features and len(shipped) == len(fresh) == make_scenes_data.N_IMAGES == 48
        assert shipped.remove_columns("image").to_list() == fresh.remove_columns("image").to_list()
        kinds = scenes.QUESTION_SETS[questions]
        for i, (spec, row) in enumerate(zip(make_scenes_data.smoke_specs(questions), shipped)):
            kind = kinds[i % len(kinds)]
            assert row["question"] == scenes.question(kind) and row["multiple_choice_answer"] == spec.answer(kind)
            answers = [a["answer"] for a in row["answers"]]
            assert len(answers) == 10 and answers.count(spec.answer(kind)) >= 7
            assert set(answers) <= set(scenes.vocabulary(kind))
            assert np.array_equal(pixels(row["image"]), pixels(scenes.draw(spec, IMAGE_SIZE)))
            assert np.array_equal(pixels(fresh[i]["image"]), pixels(row["image"]))
    assert sum(p.stat().st_size for p in sources.PACKAGE_DATA.rglob("*") if p.is_file()) <= 1_000_000


@pytest.mark.parametrize("questions", list(scenes.QUESTION_SETS))
def test_tasks_load_and_score_on_the_tiny_chameleon(tiny_dir, questions):
    """A real lmms-eval run (``--limit 4``) of the task on the tiny random Chameleon: the documents are the
    packaged rows, and each sample's score is the VQA leave-one-out accuracy of its answer."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    import model_wrappers
    from narrowgate_tasks.prompts import first_line

    task = f"narrowgate_scenes_{questions}_vqa"
    lm = model_wrappers.load_model("chameleon", str(tiny_dir("chameleon")))
    folder = str(Path(utils.__file__).parent)
    manager = TaskManager("ERROR", include_path=folder, include_defaults=False, model_name=lm.model_name)
    results = evaluator.simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, limit=4, log_samples=True, verbosity="ERROR"
    )
    samples = results["samples"][task]
    specs = make_scenes_data.smoke_specs(questions)
    kinds = scenes.QUESTION_SETS[questions]
    assert [s["doc"]["question"] for s in samples] == [scenes.question(kinds[i % 3]) for i in range(4)]
    assert [s["target"] for s in samples] == [specs[i].answer(kinds[i % 3]) for i in range(4)]
    for sample in samples:  # the official leave-one-out rule (the answers are plain words)
        pred = first_line(sample["resps"][0][0]).strip(" .").lower()
        words = [a["answer"] for a in sample["doc"]["answers"]]
        expected = np.mean([min(1.0, (words[:i] + words[i + 1 :]).count(pred) / 3) for i in range(len(words))])
        assert sample["vqa_accuracy"] == pytest.approx(expected)
    assert results["results"][task]["vqa_accuracy,none"] == pytest.approx(np.mean([s["vqa_accuracy"] for s in samples]))
