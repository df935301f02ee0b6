"""The toy native model (``narrowgate.toy``).

The shipped checkpoint, evaluated through lmms-eval with the registered Chameleon wrapper, learned the
smoke task (baseline well above ``image_ablated``, the last-image control harmless) and matches the
report it ships with. The recipe's pieces hold their invariants: the smoke drawings it excludes are the
packaged ones, no evaluated drawing or held-out combination is trained on, a packed training row
computes each prompt exactly as alone, the VQ codes separate colours, and a seed fixes the weights.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoProcessor, ChameleonForConditionalGeneration

from narrowgate import cli, toy
from narrowgate.toy import trainer
from narrowgate_tasks import shapes

# A recipe small enough to train in seconds: it checks the mechanics, not the accuracy.
QUICK = toy.ToyRecipe(
    steps=3,
    batch_images=4,
    warmup=1,
    n_train_images=32,
    kmeans_images=8,
    kmeans_iters=2,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    curve_every=1,
)


@pytest.fixture(scope="module")
def shipped_scores() -> dict[str, float]:
    return toy.smoke_accuracy(toy.toy_checkpoint(), ("baseline", "image_ablated", "last_image_ablated"))


def test_shipped_checkpoint_learned_the_smoke_task_through_lmms_eval(shipped_scores):
    scores = shipped_scores
    assert scores["baseline"] >= 0.6, scores
    assert scores["baseline"] - scores["image_ablated"] >= 0.3, scores
    assert abs(scores["last_image_ablated"] - scores["baseline"]) <= 0.05, scores


PLANTED = toy.TOY_CHECKPOINT.parent / "toy_chameleon_planted"


@pytest.fixture(scope="module")
def planted_scores() -> dict[str, float]:
    return toy.smoke_accuracy(PLANTED, ("baseline", "gate_ablated", "gate_only", "image_ablated"))


def test_planted_checkpoint_shows_the_narrow_gate_pattern_through_lmms_eval(planted_scores):
    """Trained with the gate as the only image->text path: cutting the gate is as bad as cutting the
    image, and leaving only the gate open costs nothing (the natural toy shows the opposite)."""
    scores = planted_scores
    assert scores["baseline"] >= 0.9, scores
    assert abs(scores["gate_only"] - scores["baseline"]) <= 0.05, scores
    for cut in ("gate_ablated", "image_ablated"):
        assert scores["baseline"] - scores[cut] >= 0.5, scores


def test_planted_checkpoint_is_small_and_matches_its_report(planted_scores):
    assert toy.folder_bytes(PLANTED) <= 5_000_000
    recipe = toy.ToyRecipe(**json.loads((PLANTED / toy.RECIPE_FILE).read_text()))
    assert recipe.condition == "gate_only" and recipe.attention_loss > 0
    report = json.loads((PLANTED / toy.REPORT_FILE).read_text())
    for condition, score in planted_scores.items():
        assert abs(report["smoke_vqa_accuracy"][condition] - score) <= 1 / 32 + 1e-9, (condition, report)


def test_shipped_checkpoint_is_small_loads_in_float32_and_matches_its_report(shipped_scores):
    path = toy.toy_checkpoint()
    assert toy.folder_bytes(path) <= 5_000_000
    assert json.loads((path / "config.json").read_text())["dtype"] == "float16"
    model = ChameleonForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    assert model.dtype == torch.float32
    AutoProcessor.from_pretrained(path)
    report = json.loads((path / toy.REPORT_FILE).read_text())
    recipe = toy.ToyRecipe(**json.loads((path / toy.RECIPE_FILE).read_text()))
    assert recipe == toy.ToyRecipe(seed=recipe.seed), "the shipped checkpoint must come from the documented defaults"
    for condition, score in shipped_scores.items():
        # the same evaluation as the report's; at most one of 32 questions may flip on other hardware
        assert abs(report["smoke_vqa_accuracy"][condition] - score) <= 1 / 32 + 1e-9, (condition, report)


def test_excluded_smoke_drawings_are_the_packaged_ones():
    from narrowgate_tasks.make_smoke_data import IMAGE_SIZE
    from narrowgate_tasks.sources import load_packaged

    packaged = load_packaged("vqa")["image"]
    specs = toy.eval_specs("smoke")
    assert len(packaged) == len(specs)
    for spec, image in zip(specs, packaged):
        assert image.convert("RGB").tobytes() == shapes.draw(spec, IMAGE_SIZE).tobytes(), spec


def test_no_evaluated_drawing_or_held_out_combination_is_trained_on():
    from narrowgate_tasks.sources import load_packaged

    train = toy.train_specs(toy.ToyRecipe())
    # the filter is needed: the jittered draw hits a few evaluated drawings pixel for pixel
    assert 0.99 * toy.ToyRecipe().n_train_images < len(train) < toy.ToyRecipe().n_train_images
    assert not {spec.combo for spec in train} & set(toy.HELD_OUT_COMBOS)
    assert {spec.combo for spec in toy.eval_specs("held_out")} == set(toy.HELD_OUT_COMBOS)
    trained = {shapes.draw(spec).tobytes() for spec in train}
    evaluated = [image.convert("RGB").tobytes() for image in load_packaged("vqa")["image"]]
    evaluated += [shapes.draw(spec).tobytes() for split in ("seen", "held_out") for spec in toy.eval_specs(split)]
    assert not trained & set(evaluated)


WORLDS = {  # the shapes world, and the scenes world at both image sizes and both codebooks
    "shapes": {},
    "scenes-single-256-random": {"world": "scenes", "image_tokens": 256, "codebook": "random"},
    "scenes-aggregation": {"world": "scenes", "questions": "aggregation"},
}


@pytest.mark.parametrize("world", WORLDS)
def test_a_packed_row_computes_each_prompt_exactly_as_alone(world):
    recipe = dataclasses.replace(QUICK, **WORLDS[world])
    world = toy.world_of(recipe)
    model, processor = toy.build(recipe)
    specs = toy.eval_specs("seen", world)[:3]
    pixel_values = toy.pixel_values_of(processor, specs, world)
    toy.fit_codebook(model, pixel_values, iters=2, seed=0, method=recipe.codebook)
    templates = toy.templates(processor, world, specs)
    assert len(templates.prefix) == recipe.image_tokens + 3  # bos, start of image, the image tokens, the gate
    choice = [0, 3, 4]
    batch = toy.pack(templates, specs, toy.image_tokens(model, pixel_values), choice, captions=True)
    image_cols = model.model.vocabulary_mapping.image_tokens
    with torch.no_grad():
        hidden = model.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).last_hidden_state
        packed = model.lm_head(hidden)
        packed[..., image_cols] = torch.finfo(packed.dtype).min
        for row, spec in enumerate(specs):
            ids = batch.input_ids[row].tolist()
            segment_start = len(templates.prefix)
            for kind in [*world.kinds, toy.CAPTION_KIND]:
                answer = (
                    templates.captions[spec.combo][choice[row]]
                    if kind == toy.CAPTION_KIND
                    else templates.answers[spec.answer(kind)]
                )
                segment = [*templates.suffixes[kind], *answer]
                assert ids[segment_start : segment_start + len(segment)] == segment
                # the prompt alone, through the processor and pixel_values as the wrapper runs it
                inputs = processor(
                    text=[toy.prompt_text(kind, world)],
                    images=[world.draw(spec)],
                    return_tensors="pt",
                    return_for_text_completion=True,
                )
                alone_ids = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
                alone = model(input_ids=alone_ids, pixel_values=inputs["pixel_values"]).logits[
                    0, len(templates.prefix) :
                ]
                torch.testing.assert_close(
                    packed[row, segment_start : segment_start + len(segment)], alone, rtol=0, atol=1e-4
                )
                targets = batch.text_targets[row, segment_start : segment_start + len(segment)]
                assert targets[targets >= 0].tolist() == list(answer)
                assert targets[len(templates.suffixes[kind]) - 1 : -1].tolist() == list(answer)
                segment_start += len(segment)


def test_shipped_codes_separate_colours():
    """A code given to a patch mostly covered by the shape (>= 70%) is never given to such a patch of
    another colour, on every evaluated drawing (edge patches with little ink may share codes)."""
    from PIL import Image

    model, processor = toy.load()
    specs = [spec for split in toy.SPLITS for spec in toy.eval_specs(split)]
    pixel_values = toy.pixel_values_of(processor, specs)
    codes = toy.image_tokens(model, pixel_values)

    def ink(pixels: torch.Tensor) -> torch.Tensor:  # mean distance from white per patch
        white = processor.image_processor(Image.new("RGB", (32, 32), shapes.BACKGROUND), return_tensors="pt")[
            "pixel_values"
        ]
        return torch.nn.functional.avg_pool2d((white - pixels).mean(dim=1, keepdim=True), toy.PATCH).flatten(1)

    full = {
        name: float(
            ink(processor.image_processor(Image.new("RGB", (32, 32), rgb), return_tensors="pt")["pixel_values"]).mean()
        )
        for name, rgb in shapes.COLOURS.items()
    }
    colours_of: dict[int, set[str]] = {}
    for spec, row_codes, row_ink in zip(specs, codes.tolist(), ink(pixel_values)):
        for code, amount in zip(row_codes, row_ink.tolist()):
            if amount >= 0.7 * full[spec.colour]:
                colours_of.setdefault(code, set()).add(spec.colour)
    assert len(colours_of) >= 8, colours_of
    mixed = {code: colours for code, colours in colours_of.items() if len(colours) > 1}
    assert not mixed, mixed


def test_training_is_deterministic_for_a_seed_and_resumes_exactly(tmp_path, monkeypatch):
    """A run interrupted after two steps and resumed from its saved state ends with the same weights as
    an uninterrupted run (so the seed fixes everything, and resuming loses nothing); another seed differs."""

    def quiet(line: str) -> None:
        pass

    uninterrupted_curve: list[dict] = []
    uninterrupted = toy.train(QUICK, log=quiet, curve=uninterrupted_curve)[0].state_dict()
    other_seed = toy.train(dataclasses.replace(QUICK, seed=1), log=quiet)[0].state_dict()
    assert not all(torch.equal(uninterrupted[name], other_seed[name]) for name in uninterrupted)

    monkeypatch.setattr(trainer, "RESUME_EVERY", 1)
    real_loss, calls = trainer.loss, []

    def crash_at_third_step(*args, **kwargs):
        calls.append(None)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    state = tmp_path / "state.pt"
    monkeypatch.setattr(trainer, "loss", crash_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        toy.train(QUICK, log=quiet, resume=state)
    monkeypatch.setattr(trainer, "loss", real_loss)
    lines: list[str] = []
    resumed_curve: list[dict] = []
    resumed = toy.train(QUICK, log=lines.append, resume=state, curve=resumed_curve)[0].state_dict()
    assert any("resuming at step 2" in line for line in lines), lines
    assert all(torch.equal(uninterrupted[name], resumed[name]) for name in uninterrupted)
    assert [p["step"] for p in resumed_curve] == [1, 2, 3] and resumed_curve[-1] == uninterrupted_curve[-1]


def test_train_toy_command_writes_a_loadable_float16_checkpoint(tmp_path, capsys):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(dataclasses.asdict(QUICK)))
    out = tmp_path / "toy"
    assert (
        cli.main(["train-toy", "--out", str(out), "--recipe", str(recipe_file), "--steps", "2", "--skip-measure"]) == 0
    )
    assert "step 2/2" in capsys.readouterr().out
    assert toy.ToyRecipe(**json.loads((out / toy.RECIPE_FILE).read_text())) == dataclasses.replace(QUICK, steps=2)
    model = ChameleonForConditionalGeneration.from_pretrained(out)
    assert model.dtype == torch.float16
    AutoProcessor.from_pretrained(out)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["recipe.json", "toy"], f"temporary folders or the training state left behind: {left}"


@pytest.mark.parametrize(
    ("args", "recipe", "message"),
    [
        (["--steps", "0"], None, "ToyRecipe.steps must be >= 1"),
        ([], {"stepz": 3}, "unknown recipe field(s) stepz; valid:"),
        ([], {"steps": "3"}, "ToyRecipe.steps must be int, got '3'"),
        ([], [3], "expected a JSON object of recipe fields"),
        ([], {"gate_target": "answer"}, "ToyRecipe.gate_target must be one of none, caption, colour, shape, position"),
        (["--gate-target", "count"], None, "gate_target must be one of none, caption, colour, shape, position for world shapes"),
        (["--questions", "aggregation"], None, "ToyRecipe.questions 'aggregation' needs world scenes"),
        ([], {"image_tokens": 100}, "ToyRecipe.image_tokens must be one of 64, 256, got 100"),
        (["--generation-first", "1"], None, "ToyRecipe.generation_first must be in [0, 1), got 1.0"),
        (["--generation-first", "0.5", "--image-loss", "0", "--no-captions"], None, "generation_first needs something to generate"),
        (["--t2i", "-0.5"], None, "ToyRecipe.t2i must be >= 0, got -0.5"),
        (["--hidden-size", "30"], None, "ToyRecipe.hidden_size (30) must be divisible by num_attention_heads (4)"),
        (["--t2i", "1", "--condition", "gate_only"], None, "ToyRecipe.t2i needs condition baseline"),
    ],
)
def test_bad_recipe_fails_naming_the_field(tmp_path, capsys, args, recipe, message):
    if recipe is not None:
        (tmp_path / "recipe.json").write_text(json.dumps(recipe))
        args = [*args, "--recipe", str(tmp_path / "recipe.json")]
    assert cli.main(["train-toy", "--out", str(tmp_path / "unused"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(("semantics", "collect"), [("zero", False), ("zero", True), ("mask", False), ("mask", True)])
@pytest.mark.parametrize("condition", ["gate_only", "gate_ablated"])
def test_a_packed_row_trained_under_a_condition_computes_each_prompt_as_the_engine_does(condition, semantics, collect):
    """The trainer's knockout on packed rows equals ``intervene`` on each prompt alone, for both
    semantics, on the SDPA path and on the eager path that also measures the probability on the cut keys."""
    from interventions import family_spec, find_layouts, intervene, make_condition
    from narrowgate.toy.knockout import prefix_knockouts, training_under

    model, processor = toy.build(QUICK)
    specs = toy.eval_specs("seen")[:2]
    pixel_values = toy.pixel_values_of(processor, specs)
    toy.fit_codebook(model, pixel_values, iters=2, seed=0)
    templates = toy.templates(processor)
    batch = toy.pack(templates, specs, toy.image_tokens(model, pixel_values), [0, 1], captions=False)
    knockouts = prefix_knockouts(condition, templates.prefix, processor.tokenizer)
    assert knockouts, condition
    ids = family_spec(toy.FAMILY).token_ids(processor.tokenizer)
    with torch.no_grad():
        with training_under(model, knockouts, semantics, collect=collect) as cut_mass:
            packed = model.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
            ).last_hidden_state
        assert len(cut_mass) == (QUICK.num_hidden_layers if collect else 0)
        assert all(0 < float(mass) < 1 for mass in cut_mass)
        unchanged = model.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).last_hidden_state
        assert not torch.allclose(packed, unchanged, atol=1e-3), "the condition changed nothing"
        for row, spec in enumerate(specs):
            start = len(templates.prefix)
            for kind in shapes.QUESTION_KINDS:
                suffix = templates.suffixes[kind]
                inputs = processor(
                    text=[toy.prompt_text(kind)], images=[shapes.draw(spec)], return_tensors="pt",
                    return_for_text_completion=True,
                )
                layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
                with intervene(model, make_condition(condition, knockout=semantics), layouts):
                    alone = model.model(**inputs).last_hidden_state[0, len(templates.prefix) :]
                torch.testing.assert_close(packed[row, start : start + len(suffix)], alone, rtol=0, atol=1e-4)
                start += len(suffix) + len(templates.answers[spec.answer(kind)])


@pytest.fixture(scope="module")
def quick_toy():
    """The QUICK model with a fitted codebook, its processor and templates, three drawings and their codes."""
    model, processor = toy.build(QUICK)
    specs = toy.eval_specs("seen")[:3]
    pixel_values = toy.pixel_values_of(processor, specs)
    toy.fit_codebook(model, pixel_values, iters=2, seed=0)
    return model, processor, toy.templates(processor), specs, toy.image_tokens(model, pixel_values)


@pytest.mark.parametrize("gate_target", ["none", toy.CAPTION_KIND, *shapes.QUESTION_KINDS])
def test_the_gate_target_lands_on_the_gate_with_the_first_token_of_its_text(quick_toy, gate_target):
    from interventions import family_spec

    _, processor, templates, specs, codes = quick_toy
    choice = [1, 4, 2]
    plain = toy.pack(templates, specs, codes, choice, captions=True)
    batch = toy.pack(templates, specs, codes, choice, captions=True, gate_target=gate_target)
    (gate_id,) = family_spec(toy.FAMILY).token_ids(processor.tokenizer).gate
    gate = len(templates.prefix) - 1
    assert batch.input_ids[:, gate].tolist() == [gate_id] * len(specs)
    for row, spec in enumerate(specs):
        text = {toy.CAPTION_KIND: spec.captions()[choice[row]], **{k: spec.answer(k) for k in shapes.QUESTION_KINDS}}
        first = {kind: processor.tokenizer(t, add_special_tokens=False)["input_ids"][0] for kind, t in text.items()}
        expected = first.get(gate_target, -100)
        assert batch.text_targets[row, gate] == expected, (spec, gate_target)
    # nothing else changes: the other targets, the tokens, the masks
    changed = (batch.text_targets != plain.text_targets).nonzero()[:, 1].unique().tolist()
    assert changed == ([] if gate_target == "none" else [gate])
    for name in ("input_ids", "position_ids", "attention_mask", "predicts_code", "generates_code"):
        assert torch.equal(getattr(batch, name), getattr(plain, name)), name


def test_text_to_image_rows_are_the_processors_caption_then_image_each_computed_alone(quick_toy):
    """A drawing's text-to-image row is ``"{caption}<image>"`` as the processor tokenizes it, its logits
    are those of that prompt alone (so no row reads another), the drawing rows are unchanged, and the
    loss adds ``t2i`` x the cross-entropy of each of its 64 image codes over the image codes."""
    import torch.nn.functional as F

    from interventions import family_spec

    model, processor, templates, specs, codes = quick_toy
    choice = [0, 3, 4]
    plain = toy.pack(templates, specs, codes, choice, captions=True)
    batch = toy.pack(templates, specs, codes, choice, captions=True, t2i=True)
    n, image_cols = len(specs), torch.tensor(model.model.vocabulary_mapping.image_tokens)
    assert batch.input_ids.shape[0] == 2 * n
    with torch.no_grad():
        hidden = model.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).last_hidden_state
        alone_plain = model.model(
            input_ids=plain.input_ids, attention_mask=plain.attention_mask, position_ids=plain.position_ids
        ).last_hidden_state
        width = plain.input_ids.shape[1]
        assert torch.equal(batch.input_ids[:n, :width], plain.input_ids)
        assert torch.equal(batch.text_targets[:n, :width], plain.text_targets)
        assert torch.equal(batch.predicts_code[:n, :width], plain.predicts_code)
        torch.testing.assert_close(hidden[:n, :width], alone_plain, rtol=0, atol=1e-5)
        expected_loss = 0.0
        for row, spec in enumerate(specs):
            inputs = processor(
                text=[spec.captions()[choice[row]] + family_spec(toy.FAMILY).placeholder],
                images=[shapes.draw(spec)],
                return_tensors="pt",
                return_for_text_completion=True,
            )
            alone_ids = inputs["input_ids"][0].clone()
            alone_ids[alone_ids == templates.image_id] = codes[row].long()
            r, length = n + row, len(alone_ids)
            assert batch.input_ids[r, :length].tolist() == alone_ids.tolist()
            assert (batch.input_ids[r, length:] == templates.pad_id).all()
            assert (batch.text_targets[r] == -100).all() and not batch.predicts_code[r].any()
            # the loss mask: exactly the positions whose next token is one of the 64 image codes
            where = batch.generates_code[r].nonzero()[:, 0]
            assert batch.input_ids[r, where + 1].tolist() == codes[row].tolist()
            # hidden states, not the model's logits: its forward hides the image codes from the softmax
            alone = model.model(**inputs).last_hidden_state[0]
            torch.testing.assert_close(hidden[r, :length], alone, rtol=0, atol=1e-5)
            alone = model.lm_head(alone)
            expected_loss += F.cross_entropy(
                alone[where][:, image_cols], torch.searchsorted(image_cols, codes[row]), reduction="sum"
            )
        with_t2i = toy.loss(model, batch, image_loss=0.5, t2i=0.7)[0]
        without = toy.loss(model, batch, image_loss=0.5)[0]
        torch.testing.assert_close(with_t2i - without, 0.7 * expected_loss / (64 * n), rtol=1e-5, atol=1e-6)


def test_defaults_pack_and_train_as_before_and_new_factors_keep_the_data_stream(quick_toy, monkeypatch):
    """At their defaults the new fields leave the batch and loss as the old call makes them (an old
    recipe file loads to them), and turning them on changes the weights but not which drawings and
    captions each step sees (no random stream is touched)."""
    model, _, templates, specs, codes = quick_toy
    old = toy.pack(templates, specs, codes, [0, 1, 2], True)
    new = toy.pack(templates, specs, codes, [0, 1, 2], True, gate_target="none", t2i=False)
    for field in dataclasses.fields(old):
        assert torch.equal(getattr(old, field.name), getattr(new, field.name)), field.name
    assert not new.generates_code.any() and (new.text_targets[:, len(templates.prefix) - 1] == -100).all()
    with torch.no_grad():
        assert torch.equal(toy.loss(model, old, 1.0)[0], toy.loss(model, new, 1.0, t2i=0.0)[0])
    shipped = json.loads((toy.toy_checkpoint() / toy.RECIPE_FILE).read_text())
    new_fields = {"gate_target": "none", "t2i": 0.0, "world": "shapes", "questions": "single", "image_tokens": 64}
    new_fields |= {"codebook": "kmeans", "generation_first": 0.0}
    assert set(new_fields).isdisjoint(shipped)
    assert toy.ToyRecipe(**shipped) == toy.ToyRecipe(**shipped, **new_fields)

    seen, real_pack = [], trainer.pack

    def recording_pack(t, specs, codes, choice, *args, **kwargs):
        if "captions" not in kwargs:  # a training batch (the learning-curve probe names its arguments)
            seen[-1].append(([spec.combo for spec in specs], codes.tolist(), list(choice)))
        return real_pack(t, specs, codes, choice, *args, **kwargs)

    monkeypatch.setattr(trainer, "pack", recording_pack)
    weights = []
    for recipe in (QUICK, dataclasses.replace(QUICK, gate_target="caption", t2i=1.0)):
        seen.append([])
        weights.append(toy.train(recipe, log=lambda line: None)[0].state_dict())
    assert seen[0] == seen[1] and len(seen[0]) == QUICK.steps
    assert not all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_train_toy_architecture_options_set_the_recipe_and_help_lists_the_factors(capsys):
    import argparse

    from narrowgate.toy.cli import configure, recipe_from

    parser = argparse.ArgumentParser()
    configure(parser)

    def recipe(*args: str) -> toy.ToyRecipe:
        return recipe_from(parser.parse_args(["--out", "unused", *args]))

    assert recipe() == toy.ToyRecipe()
    wide = recipe("--layers", "2", "--hidden-size", "64", "--gate-target", "shape", "--t2i", "0.5")
    assert (wide.num_hidden_layers, wide.hidden_size, wide.intermediate_size) == (2, 64, 192)
    assert (wide.gate_target, wide.t2i) == ("shape", 0.5)
    assert recipe("--hidden-size", "64", "--intermediate-size", "100").intermediate_size == 100
    with pytest.raises(SystemExit):
        cli.main(["train-toy", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--layers", "--hidden-size", "--intermediate-size", "--gate-target", "--t2i"):
        assert option in help_text, option


def test_a_generation_first_curriculum_trains_no_text_until_the_questions_join():
    """With captions off, the only text targets are the answers: the learning curve's text loss is 0 in the
    generation-only steps and positive from the first step that asks the questions."""
    curve: list[dict] = []
    recipe = dataclasses.replace(QUICK, steps=4, captions=False, generation_first=0.5, curve_every=1)
    toy.train(recipe, log=lambda line: None, curve=curve)
    assert [point["step"] for point in curve] == [1, 2, 3, 4]
    assert [point["text_loss"] > 0 for point in curve] == [False, False, True, True]


def test_the_learning_curve_probe_agrees_with_greedy_answers():
    """The curve's cheap teacher-forced exact match (packed rows) scores the same answers as greedy
    generation through the processor (report.accuracy) on the same drawings: the shipped toy asked about
    textured scenes, where it is right often but not always."""
    model, processor = toy.load()
    world = toy.World("scenes")
    specs = toy.eval_specs("seen", world)[: trainer.PROBE]
    pixel_values = toy.pixel_values_of(processor, specs, world)
    probed = toy.probe(model, toy.templates(processor, world, specs), toy.image_tokens(model, pixel_values), specs)
    items = toy.question_items(specs, world)
    greedy = toy.accuracy(model, processor, items, world=world)["macro"]
    assert 0.5 < probed < 1
    assert abs(probed - greedy) <= 1 / len(items), (probed, greedy)


def test_the_giveaway_measure_tells_the_shapes_tokenizer_from_the_scenes_one(tmp_path):
    """The first study's diagnosis, measured: in the shapes world almost every drawing has an image token
    whose code alone names its colour; in the textured scenes world (same encoder and codebook fit) few do."""
    shipped = toy.giveaway(toy.toy_checkpoint())
    assert shipped["per_kind"]["colour"] >= 0.9, shipped
    recipe = dataclasses.replace(QUICK, world="scenes", n_train_images=400, kmeans_images=400, kmeans_iters=10)
    world = toy.world_of(recipe)
    model, processor = toy.build(recipe)
    toy.fit_codebook(model, toy.pixel_values_of(processor, toy.train_specs(recipe), world), iters=10, seed=0)
    toy.save(model, processor, recipe, tmp_path / "scenes", {})
    scenes = toy.giveaway(tmp_path / "scenes")
    assert scenes["per_kind"]["colour"] <= 0.3, scenes
    assert set(scenes["per_kind"]) == set(world.kinds) and scenes["n"] == 2 * 96
