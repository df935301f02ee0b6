"""Invariants of the analyses (``narrowgate.analyses``) on tiny random-weight checkpoints.

Attention shares sum to 1 per layer and equal the eager reference's ``output_attentions``; patching a
run with its own gate changes nothing, and patching every layer's gate when the text reads the image
only through the gate (gate_only, mask) reproduces the base run; chi of the labels themselves is 1 and of
random vectors near chance; the locator finds a gate planted by construction (gate_only, mask).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interventions import intervene, make_condition
from narrowgate.analyses import attention, locate, overlap, patching
from narrowgate.analyses.data import load_examples
from narrowgate.analyses.subject import GROUPS, Subject
from narrowgate_tasks import prompts

N = 8


@pytest.fixture(scope="module")
def examples():
    return load_examples("shapes", N)


@pytest.fixture(scope="module")
def subjects(tiny_dir):
    cache = {}

    def get(family: str) -> Subject:
        if family not in cache:
            cache[family] = Subject(family, str(tiny_dir(family)), device="cpu", dtype="float32", batch_size=4)
        return cache[family]

    return get


@pytest.mark.parametrize("family", ["chameleon", "llava", "emu3"])
@pytest.mark.parametrize("condition", [None, "gate_ablated"])
def test_attention_shares_sum_to_one_and_equal_the_eager_reference(subjects, examples, family, condition):
    subject = subjects(family)
    condition = condition and make_condition(condition)
    requests = [prompts.CAPTION_REQUEST] * N
    table = attention.attention_share(subject, examples.images, requests, condition)
    wide = table.pivot(index="layer", columns="group", values="share")[list(GROUPS)]
    np.testing.assert_allclose(wide.sum(axis=1), 1.0, rtol=0, atol=1e-9)

    expected = torch.zeros(subject.num_layers, len(GROUPS), dtype=torch.float64)
    inputs, layouts, groups = subject.encode(examples.images, requests, [str(i) for i in range(N)])
    with torch.no_grad(), intervene(subject.model, condition or "baseline", layouts, reference=True):
        attentions = subject.model(**inputs, output_attentions=True).attentions
    for layer, probs in enumerate(attentions):
        for b, (layout, g) in enumerate(zip(layouts, groups)):
            block = probs[b, :, layout.text_after.start :, : g.gate[-1] + 1].double().sum(dim=(0, 1))
            block = block / block.sum()
            expected[layer] += torch.stack([block[list(g[name])].sum() for name in GROUPS]) / N
    np.testing.assert_allclose(wide.to_numpy(), expected.numpy(), rtol=0, atol=1e-6)
    if condition is not None:  # zero knockout of the gate: exactly no attention on it
        assert (wide["gate"] == 0).all()
    else:
        assert (wide["gate"] > 0).all() and (wide["image"] > 0).all()


def test_patching_a_run_with_its_own_gate_changes_nothing(subjects, examples):
    subject = subjects("chameleon")
    pairs = [("colour", i, i) for i in range(4)]
    layer_sets = {"cumulative": [tuple(range(subject.num_layers))], "single": [(1,)]}
    p_base, p_target, patched, _ = patching.patch_runs(subject, examples, pairs, None, layer_sets)
    torch.testing.assert_close(p_base, p_target, rtol=0, atol=0)
    for p in patched.values():
        torch.testing.assert_close(p, p_base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["chameleon", "llava"])
def test_patching_every_layer_under_gate_only_gives_the_base_run(subjects, examples, family):
    """When the text reads the image only through the gate (gate_only, mask semantics), the gate of the
    base image at every layer makes the target run the base run; at layer 0 alone it changes nothing
    (the gate's input there is its token embedding, the same for every image)."""
    subject = subjects(family)
    pairs = patching.pairs_of(examples.labels, 4, seed=0)
    condition = make_condition("gate_only", knockout="mask")
    every = tuple(range(subject.num_layers))
    p_base, p_target, patched, _ = patching.patch_runs(
        subject, examples, pairs, condition, {"cumulative": [every], "single": [(0,)]}
    )
    # random weights: near-uniform distributions (~1e-3 per token), so the differences are small
    difference = float((p_target - p_base).abs().max())
    assert difference > 1e-6, "base and target images must give different runs"
    torch.testing.assert_close(patched["cumulative", every], p_base, rtol=0, atol=difference / 100)
    torch.testing.assert_close(patched["single", (0,)], p_target, rtol=0, atol=difference / 100)


def test_chi_is_one_for_a_copy_of_the_label_and_near_chance_for_noise():
    rng = np.random.default_rng(0)
    labels = [str(v) for v in rng.integers(0, 4, size=400)]
    one_hot = np.eye(4)[[int(v) for v in labels]] + 1e-3 * rng.normal(size=(400, 4))
    assert overlap.chi(one_hot, labels, k=30) == 1.0
    noise = rng.normal(size=(400, 16))
    assert abs(overlap.chi(noise, labels, k=30) - overlap.chance(labels)) < 0.03
    with pytest.raises(ValueError, match="k must be between 1 and n - 1"):
        overlap.chi(noise[:10], labels[:10], k=10)


def test_the_locator_finds_a_gate_planted_by_construction(subjects, examples):
    """Under gate_only (mask) the text reads the image only through the gate: patching the gate alone
    transfers the base run entirely (transfer 1) and ranks first; no image token comes close."""
    subject = subjects("chameleon")
    table = locate.locate(
        subject, examples, make_condition("gate_only", knockout="mask"), n_pairs=3, after=1, knockout="zero", seed=0
    )
    top = table.iloc[0]
    assert top.candidate == "gate[0]", table.head()
    assert top.transfer == pytest.approx(1.0, abs=1e-4)
    image = table[table.group.isin(["image", "last"])]
    assert len(image) == 64 and image.transfer.max() < 0.5
    special = table[table.group == "special"]
    assert len(special) >= 1 and special.transfer.abs().max() < 1e-6  # before the image: nothing to carry
