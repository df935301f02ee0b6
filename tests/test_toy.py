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
from narrowgate_tasks import shapes

# A recipe small enough to train in seconds: it checks the mechanics, not the accuracy.
QUICK = toy.ToyRecipe(
    steps=3, batch_images=4, warmup=1, n_train_images=32, kmeans_images=32, kmeans_iters=2,
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
)


@pytest.fixture(scope="module")
def shipped_scores() -> dict[str, float]:
    return toy.smoke_accuracy(toy.toy_checkpoint(), ("baseline", "image_ablated", "last_image_ablated"))


def test_shipped_checkpoint_learned_the_smoke_task_through_lmms_eval(shipped_scores):
    scores = shipped_scores
    assert scores["baseline"] >= 0.6, scores
    assert scores["baseline"] - scores["image_ablated"] >= 0.3, scores
    assert abs(scores["last_image_ablated"] - scores["baseline"]) <= 0.05, scores


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
    specs = toy.smoke_specs()
    assert len(packaged) == len(specs)
    for spec, image in zip(specs, packaged):
        assert image.convert("RGB").tobytes() == shapes.draw(spec, IMAGE_SIZE).tobytes(), spec


def test_no_evaluated_drawing_or_held_out_combination_is_trained_on():
    from narrowgate_tasks.sources import load_packaged

    train = toy.train_specs(toy.ToyRecipe())
    # the filter is needed: the jittered draw hits a few evaluated drawings pixel for pixel
    assert 0.99 * toy.ToyRecipe().n_train_images < len(train) < toy.ToyRecipe().n_train_images
    assert not {spec.combo for spec in train} & set(toy.HELD_OUT_COMBOS)
    assert {spec.combo for spec in toy.test_specs("held_out")} == set(toy.HELD_OUT_COMBOS)
    trained = {shapes.draw(spec).tobytes() for spec in train}
    evaluated = [image.convert("RGB").tobytes() for image in load_packaged("vqa")["image"]]
    evaluated += [shapes.draw(spec).tobytes() for split in ("seen", "held_out") for spec in toy.test_specs(split)]
    assert not trained & set(evaluated)


def test_a_packed_row_computes_each_prompt_exactly_as_alone():
    model, processor = toy.build(QUICK)
    specs = toy.test_specs("seen")[:3]
    pixel_values = toy._pixel_values(processor, specs)
    toy.fit_codebook(model, pixel_values, iters=2, seed=0)
    templates = toy.templates(processor)
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
            for kind in [*shapes.QUESTION_KINDS, toy.CAPTION_KIND]:
                answer = templates.captions[spec.combo][choice[row]] if kind == toy.CAPTION_KIND else templates.answers[spec.answer(kind)]
                segment = [*templates.suffixes[kind], *answer]
                assert ids[segment_start : segment_start + len(segment)] == segment
                # the prompt alone, through the processor and pixel_values as the wrapper runs it
                inputs = processor(text=[toy.prompt_text(kind)], images=[shapes.draw(spec)], return_tensors="pt", return_for_text_completion=True)
                alone_ids = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
                alone = model(input_ids=alone_ids, pixel_values=inputs["pixel_values"]).logits[0, len(templates.prefix) :]
                torch.testing.assert_close(packed[row, segment_start : segment_start + len(segment)], alone, rtol=0, atol=1e-4)
                targets = batch.text_targets[row, segment_start : segment_start + len(segment)]
                assert targets[targets >= 0].tolist() == list(answer)
                assert targets[len(templates.suffixes[kind]) - 1 : -1].tolist() == list(answer)
                segment_start += len(segment)


def test_shipped_codes_separate_colours():
    """Every code that inked patches of the smoke drawings get belongs to one colour only."""
    model, processor = toy.load()
    specs = toy.smoke_specs()
    pixel_values = toy._pixel_values(processor, specs)
    codes = toy.image_tokens(model, pixel_values)
    white = pixel_values.amax()
    ink = torch.nn.functional.avg_pool2d((white - pixel_values).mean(dim=1, keepdim=True), toy.PATCH).flatten(1)
    colour_of: dict[int, set[str]] = {}
    for spec, row_codes, row_ink in zip(specs, codes.tolist(), ink):
        for code, amount in zip(row_codes, row_ink.tolist()):
            if amount > 0.5:  # at least a third of the patch covered
                colour_of.setdefault(code, set()).add(spec.colour)
    assert colour_of and all(len(colours) == 1 for colours in colour_of.values()), colour_of


def test_training_is_deterministic_for_a_seed():
    def weights(recipe):
        model, _ = toy.train(recipe, log=lambda line: None)
        return model.state_dict()

    first, again, other = weights(QUICK), weights(QUICK), weights(dataclasses.replace(QUICK, seed=1))
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_train_toy_command_writes_a_loadable_float16_checkpoint(tmp_path, capsys):
    out = tmp_path / "toy"
    assert cli.main(["train-toy", "--out", str(out), "--steps", "2", "--skip-measure"]) == 0
    assert "step 2/2" in capsys.readouterr().out
    recipe = json.loads((out / toy.RECIPE_FILE).read_text())
    assert recipe["steps"] == 2 and recipe["seed"] == 0
    model = ChameleonForConditionalGeneration.from_pretrained(out)
    assert model.dtype == torch.float16
    AutoProcessor.from_pretrained(out)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "toy"], "temporary folders left behind"


def test_bad_recipe_fails_with_the_field_named(capsys):
    assert cli.main(["train-toy", "--out", "unused", "--steps", "0"]) == 2
    assert "ToyRecipe.steps must be >= 1" in capsys.readouterr().err
