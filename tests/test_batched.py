"""Conditions side by side (``generate_each``, the grid's batched pass, with its shared prefix; and
``intervene_each``) give every row exactly what its condition gives it alone: same tokens, same logits,
for every family and condition, ``zero`` and ``mask``, on a left-padded batch of 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from tiny_cases import CONDITION_CASES, TINY_CASES, case_condition, load, same_size_pair

from interventions import intervene, intervene_each, make_condition
from interventions.session import language_model

NEW_TOKENS = 4
# every condition and semantics, a second random seed, and a layer subset next to the all-layer rows
CONDITIONS = [case_condition(name, knockout) for name, knockout in CONDITION_CASES] + [
    make_condition("random_image_ablated", k=3, seed=1),
    make_condition("gate_ablated", layers="last:1", knockout="mask"),
    make_condition("gate_randomized", seed=1, layers="0"),
]


# The families whose images become token ids: their prompts split anywhere, so the prefix is shared.
TOKEN_IMAGES = {"chameleon", "emu3"}


@contextmanager
def counted_forwards(model) -> Iterator[list[tuple[int, int]]]:
    """(rows, positions) of every forward of the language model's decoder layers inside the block."""
    forwards = []
    first_layer = language_model(model).layers[0]
    hook = first_layer.register_forward_pre_hook(
        lambda module, args, kwargs: forwards.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])),
        with_kwargs=True,
    )
    try:
        yield forwards
    finally:
        hook.remove()


@pytest.mark.parametrize(
    "family, reference", [(family, False) for family in TINY_CASES] + [("chameleon", True), ("llava", True)]
)
def test_conditions_side_by_side_equal_each_alone(tiny_dir, images, family, reference):
    """``generate_each`` side by side = ``generate_each`` one condition at a time, token for token, and =
    the unsplit ``intervene`` path; the prefix before the batch's earliest last image token is computed
    once for every condition that changes no row before it (token-image families; the others run the
    whole prompt side by side). The fast path on every tiny checkpoint; the eager reference on two."""
    tiny = load(tiny_dir, family)
    inputs = tiny.inputs(same_size_pair(images))
    layouts = tiny.layouts(inputs)
    assert layouts[0].first != layouts[1].first, "the batch is not padded; the test proves nothing"
    batch, length, rows = len(layouts), inputs["input_ids"].shape[1], len(CONDITIONS) * len(layouts)
    with counted_forwards(tiny.model) as forwards:
        together, together_logits = tiny.generate(inputs, NEW_TOKENS, CONDITIONS, layouts, reference=reference)
    if family in TOKEN_IMAGES:
        split = min(layout.spans[0].gate[0] for layout in layouts) - 1  # the earliest last image token
        assert any(split < layout.spans[0].image.stop - 1 for layout in layouts), "no image is cut; the test proves less"
        # one shared prefix, one per random_image_ablated (its cuts fall inside the image), then the rest
        own = sum(condition.name == "random_image_ablated" for condition in CONDITIONS)
        prefill = [(batch, split)] * (1 + own) + [(rows, length - split)]
    else:
        prefill = [(rows, length)]
    assert forwards == prefill + [(rows, 1)] * (NEW_TOKENS - 1)
    distinct = set()
    for index, condition in enumerate(CONDITIONS):
        alone, alone_logits = tiny.generate(inputs, NEW_TOKENS, [condition], layouts, reference=reference)
        with intervene(tiny.model, condition, layouts, reference=reference):
            unsplit, unsplit_logits = tiny.generate(inputs, NEW_TOKENS)
        rows = slice(index * batch, (index + 1) * batch)
        assert torch.equal(together[rows], alone), condition
        assert torch.equal(alone, unsplit), condition
        torch.testing.assert_close(together_logits[rows], alone_logits, rtol=0, atol=1e-5, msg=str(condition))
        torch.testing.assert_close(alone_logits, unsplit_logits, rtol=0, atol=1e-5, msg=str(condition))
        distinct.add(round(alone_logits.amax(dim=-1).sum().item(), 4))
    assert len(distinct) > len(CONDITIONS) // 2, "the conditions barely differ; the test proves little"


def test_intervene_each_equals_each_alone(tiny_dir, images):
    """``intervene_each`` (no prefix sharing; any forward) gives each block what ``intervene`` gives it."""
    tiny = load(tiny_dir, "chameleon")
    inputs = tiny.inputs(same_size_pair(images))
    layouts = tiny.layouts(inputs)
    with intervene_each(tiny.model, CONDITIONS, layouts) as expand:
        together = tiny.logits(expand(inputs))
    for index, condition in enumerate(CONDITIONS):
        with intervene(tiny.model, condition, layouts):
            alone = tiny.logits(inputs)
        rows = slice(index * len(layouts), (index + 1) * len(layouts))
        torch.testing.assert_close(together[rows], alone, rtol=0, atol=1e-5, msg=str(condition))


def test_wrong_batch_is_refused(tiny_dir, images):
    tiny = load(tiny_dir, "chameleon")
    inputs = tiny.inputs(same_size_pair(images))
    refused = pytest.raises(ValueError, match=r"2 conditions x 2 rows = 4; pass the inputs through the block's expand")
    with intervene_each(tiny.model, ["baseline", "gate_ablated"], tiny.layouts(inputs)), refused:
        tiny.logits(inputs)


# ------------------------------------------------------------------------------------------------ the grid

GRID_CONFIG = """
tasks: [narrowgate_smoke_vqa]
limit: 3                 # batches of 2 and 1: left padding and a partial batch
model_args: {batch_size: 2}
conditions:
  - baseline
  - {name: gate_ablated, knockout: mask}
  - {name: gate_only, layers: "last:1"}
  - {name: random_image_ablated, k: 2, repeats: 2}
  - gate_randomized
models:
  - {name: tiny-chameleon, family: chameleon, tiny: {seed: 0}}
  - {name: tiny-llava, family: llava, tiny: {seed: 0}}
"""


def grid_outputs(output) -> dict:
    """Every cell's metrics and samples (outputs, scores, audits; the checkpoint folder left out)."""
    cells = {}
    for marker in sorted(output.glob("*/*/*/cell.json")):
        record = json.loads(marker.read_text())
        folder = marker.parent
        task = record["spec"]["task"]
        samples = [json.loads(line) for line in (folder / record["samples"]).read_text().splitlines()]
        for sample in samples:
            sample["narrowgate"].pop("pretrained")
        metrics = json.loads((folder / record["results"]).read_text())["results"][task]
        cells[str(folder.relative_to(output))] = (metrics, sorted(samples, key=lambda s: s["doc_id"]), record["lmms_eval"]["model"])
    return cells


def test_batched_grid_equals_the_sequential_grid(tmp_path, monkeypatch):
    """Token-identical answers, the same metrics and per-condition audits, one generation pass per model
    and task (with --max-rows 4: two conditions x batch 2 per forward); each cell still its own run."""
    from model_wrappers.generation import Generator
    from narrowgate.grid import load_config, run_grid

    path = tmp_path / "grid.yaml"
    path.write_text(GRID_CONFIG)
    config = load_config(path)
    sequential = run_grid(config, tmp_path / "sequential", sequential=True)

    passes = []
    real = Generator.generate

    def counted(generator, requests, conditions, *args):
        passes.append((generator.encoder.spec.name, len(requests), len(conditions)))
        return real(generator, requests, conditions, *args)

    monkeypatch.setattr(Generator, "generate", counted)
    batched = run_grid(config, tmp_path / "batched", max_rows=4)
    assert not sequential.failed and not batched.failed, [(s.cell, s.error) for s in batched.failed + sequential.failed]
    assert passes == [("chameleon", 3, 6), ("llava", 3, 6)]
    expected, got = grid_outputs(tmp_path / "sequential"), grid_outputs(tmp_path / "batched")
    assert len(expected) == 12 and set(got) == set(expected)
    assert len({json.dumps(cell[1][0]["filtered_resps"]) for cell in expected.values()}) > 4, "the answers barely differ"
    for cell in expected:
        assert got[cell] == expected[cell], cell

    # A pass that does not fit splits itself: a GPU out-of-memory error (injected above 4 rows, i.e. 2
    # conditions x batch 2) makes each pass redo its conditions in halves; the outputs stay the same.
    import transformers

    model_class = transformers.ChameleonForConditionalGeneration
    generate, rows = model_class.generate, []

    def short_of_memory(model, **inputs):
        rows.append(len(inputs["input_ids"]))
        if rows[-1] > 4:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return generate(model, **inputs)

    monkeypatch.setattr(model_class, "generate", short_of_memory)
    split = run_grid(config, tmp_path / "split", only=["tiny-chameleon/*"])
    assert not split.failed, [(s.cell, s.error) for s in split.failed]
    assert rows[:4] == [12, 6, 2, 4], rows  # 6 conditions, then 3 + 3 (each as 1 + 2), per batch
    got = grid_outputs(tmp_path / "split")
    assert set(got) == {cell for cell in expected if cell.startswith("tiny-chameleon/")}
    for cell in got:
        assert got[cell] == expected[cell], cell
