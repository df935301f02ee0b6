"""Invariants of the analyses (``narrowgate.analyses``) on tiny random-weight checkpoints.

Attention shares sum to 1 per layer over image tokens + gate and equal the eager reference's
``output_attentions``; patching a run with its own gate changes nothing, and patching every layer's gate
when the text reads the image only through the gate (gate_only, mask) reproduces the base run; flips
count toward the source only; chi of the labels themselves is 1 (its ceiling) and of random vectors near
chance; density peaks assign every point; the gap's image token reads the caption; the locator finds a
gate planted by construction (gate_only, mask) and names none where no position carries the answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from interventions import intervene, make_condition
from narrowgate.analyses import attention, gap, locate, overlap, patching
from narrowgate.analyses.clustering import density_peaks
from narrowgate.analyses.data import load_examples
from narrowgate.analyses.subject import Subject, vectors
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


@pytest.mark.parametrize("family", ["chameleon", "llava", "emu3", "pixtral"])
@pytest.mark.parametrize("condition", [None, "gate_ablated"])
def test_attention_shares_sum_to_one_over_image_tokens_and_gate_and_equal_the_eager_reference(subjects, examples, family, condition):
    """The paper's normalisation (ANALYSES.md Fig. 3): the text queries' attention summed over heads,
    queries and examples, normalised over the image tokens + gate only (bos and start-of-image left out),
    checked against ``output_attentions`` computed here independently."""
    subject = subjects(family)
    condition = condition and make_condition(condition)
    requests = [prompts.vqa_request("What colour is the shape?")] * N
    table = attention.attention_share(subject, examples.images, requests, condition)
    wide = table.pivot(index="layer", columns="group", values="share")[list(attention.GROUPS)]
    np.testing.assert_allclose(wide.sum(axis=1), 1.0, rtol=0, atol=1e-9)

    sums = torch.zeros(subject.num_layers, len(attention.GROUPS), dtype=torch.float64)
    inputs, layouts, groups = subject.encode(examples.images, requests, [str(i) for i in range(N)])
    ids = inputs["input_ids"]
    with torch.no_grad(), intervene(subject.model, condition or "baseline", layouts, reference=True):
        attentions = subject.model(**inputs, output_attentions=True).attentions
    for layer, probs in enumerate(attentions):
        for b, layout in enumerate(layouts):
            (span,) = layout.spans
            received = probs[b, :, layout.text_after.start :].double().sum(dim=(0, 1))
            run = list(span.image)
            common = torch.mode(ids[b, run]).values
            odd = [p for p in run[:-1] if ids[b, p] != common]
            plain = [p for p in run[:-1] if ids[b, p] == common]
            sums[layer] += torch.stack([received[list(span.gate)].sum(), received[run[-1]], received[plain].sum(), received[odd].sum()])
    expected = sums / sums.sum(dim=1, keepdim=True)
    np.testing.assert_allclose(wide.to_numpy(), expected.numpy(), rtol=0, atol=1e-6)
    if condition is not None:  # zero knockout of the gate: exactly no attention on it
        assert (wide["gate"] == 0).all()
    else:
        assert (wide["gate"] > 0).all() and (wide["image"] > 0).all()
    assert (wide["special"] > 0).all() == (family == "pixtral")  # Pixtral's row breaks


@pytest.mark.parametrize("family", ["chameleon", "llava"])
def test_attention_contribution_weighs_each_head_by_what_it_writes(subjects, examples, family):
    """contribution: A_h[i, j] x ||o_proj(v_j with only head h's slice kept)||, computed here through the
    module's own o_proj (not the weight reshape the analysis uses), normalised as the attention share."""
    subject = subjects(family)
    requests = [prompts.vqa_request("What shape is it?")] * N
    table = attention.attention_share(subject, examples.images, requests, None, measure="contribution")
    wide = table.pivot(index="layer", columns="group", values="share")[list(attention.GROUPS)]
    inputs, layouts, groups = subject.encode(examples.images, requests, [str(i) for i in range(N)])
    values = {}
    hooks = [
        layer.self_attn.v_proj.register_forward_hook(lambda m, a, o, i=i: values.__setitem__(i, o))
        for i, layer in enumerate(subject.layers)
    ]
    with torch.no_grad(), intervene(subject.model, "baseline", layouts, reference=True):
        attentions = subject.model(**inputs, output_attentions=True).attentions
    for hook in hooks:
        hook.remove()
    ids = inputs["input_ids"].tolist()
    for layer, probs in enumerate(attentions):
        module = subject.layers[layer].self_attn
        heads, size = probs.shape[1], module.head_dim
        v = values[layer].reshape(N, values[layer].shape[1], -1, size)
        v = v.repeat_interleave(heads // v.shape[2], dim=2)
        norms = torch.zeros(N, heads, v.shape[1])
        with torch.no_grad():
            for h in range(heads):
                only = torch.zeros(N, v.shape[1], heads, size)
                only[:, :, h] = v[:, :, h]
                norms[:, h] = module.o_proj(only.reshape(N, v.shape[1], -1)).norm(dim=-1)
        sums = torch.zeros(len(attention.GROUPS), dtype=torch.float64)
        for b, (layout, g) in enumerate(zip(layouts, groups)):
            named = attention.image_side(g, ids[b])
            f = (probs[b] * norms[b][:, None, :])[:, layout.text_after.start :].double().sum(dim=(0, 1))
            sums += torch.stack([f[named[name]].sum() for name in attention.GROUPS])
        np.testing.assert_allclose(wide.loc[layer].to_numpy(), (sums / sums.sum()).numpy(), rtol=0, atol=1e-5)
    plain = attention.attention_share(subject, examples.images, requests, None)
    assert not np.allclose(plain.share, table.share, atol=1e-3)  # the value norms do weigh


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


def test_chi_reaches_one_with_the_default_k_and_its_ceiling_otherwise():
    """With k = 30 and classes of 10 and 20, a perfect embedding reached only 0.63 (the old default);
    the default k stays below the smallest class, so it reaches 1; any k reaches exactly the ceiling."""
    labels = ["a"] * 10 + ["b"] * 20
    perfect = np.eye(2)[[0] * 10 + [1] * 20] + 1e-3 * np.random.default_rng(0).normal(size=(30, 2))
    k = overlap.neighbours(labels, None)
    assert k == 9 and overlap.ceiling(labels, k) == 1.0 and overlap.chi(perfect, labels, k) == 1.0
    assert overlap.ceiling(labels, 29) == pytest.approx((10 * 9 + 20 * 19) / (29 * 30))
    assert overlap.chi(perfect, labels, 29) == pytest.approx(overlap.ceiling(labels, 29))
    assert overlap.neighbours(labels, 50) == 29
    with pytest.raises(ValueError, match="a label has a single example"):
        overlap.neighbours(["a", "b", "b"], None)


def test_flips_count_toward_the_source_among_pairs_that_prefer_the_target():
    """answers (base, target) = (0, 1): pair 0 moves from the target to the base answer (a flip), pair 1
    preferred the base answer unpatched and moves to the target (not a flip toward the source, but an
    either-way change), pair 2 prefers the target in both runs."""
    answers = torch.tensor([[0, 1], [0, 1], [0, 1]])
    p_target = torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    p_patched = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    assert patching.flips(p_target, p_patched, answers) == {"toward_source": 0.5, "either": pytest.approx(2 / 3), "eligible": 2}


def test_density_peaks_assign_every_point_and_separate_two_modalities():
    rng = np.random.default_rng(0)
    text = np.eye(16)[0] + 0.05 * rng.normal(size=(40, 16))
    image = np.eye(16)[1] + 0.05 * rng.normal(size=(40, 16))
    labels = density_peaks(np.vstack([text, image]))
    assert labels.min() == 0 and len(labels) == 80
    assert len(set(labels[:40])) == 1 and len(set(labels[40:])) == 1 and labels[0] != labels[40]
    score, clusters = gap.homogeneity(torch.tensor(text), torch.tensor(image))
    assert (score, clusters) == (1.0, 2)
    one = density_peaks(np.eye(16)[0] + 0.05 * rng.normal(size=(80, 16)))
    assert set(one) == {0}


def test_the_gaps_image_token_reads_the_caption(subjects, examples):
    """The paper's caption->image prompt: with the image after the caption, the image token's residual
    depends on the caption; with the image first (the benchmarks' order) it cannot."""
    subject = subjects("chameleon")
    pick = {"image": lambda g, i: g.last}
    first, second = ["a red circle"] * N, ["a blue square on the left"] * N
    after = [vectors(subject, examples.images, c, None, pick, "t", image_last=True)["image"] for c in (first, second)]
    before = [vectors(subject, examples.images, c, None, pick, "t")["image"] for c in (first, second)]
    assert float((after[0] - after[1]).abs().max()) > 1e-4
    torch.testing.assert_close(before[0], before[1], rtol=0, atol=0)


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
    assert locate.verdict(table) == ("gate[0]", locate.verdict(table)[1])
    assert locate.verdict(table)[1].startswith("route through gate[0]: transfer 1.00")


def test_locate_draws_the_gate_with_its_rank_outside_the_top_candidates():
    rows = [(f"image[{i}]", "image", 0.5 - i / 100, 0.0, i + 1, i + 1) for i in range(20)]
    table = pd.DataFrame(rows + [("gate[0]", "gate", 0.0, 0.0, 21, 21)], columns=["candidate", "group", "transfer", "damage", "transfer_rank", "damage_rank"])
    figure = locate.plot(table, "locate the gate: toy, baseline, n=3 pairs")
    names = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert "gate[0] (#21)" in names and "image[0] (#1)" in names and len(names) == locate.TOP + 1


def test_locate_names_no_gate_below_the_route_threshold():
    table = pd.DataFrame(
        [("image[11]", "image", 0.06, 0.01, 1, 2), ("special[0]", "special", 0.0, 0.3, 2, 1), ("gate[0]", "gate", 0.0, 0.0, 2, 3)],
        columns=["candidate", "group", "transfer", "damage", "transfer_rank", "damage_rank"],
    )
    located, sentence = locate.verdict(table)
    assert located is None
    assert sentence == "no single-token route: best transfer 0.06 at image[11]; the family's gate gate[0] transfers 0.00 (rank 2 of 3)"
