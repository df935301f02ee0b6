"""Cross-modal attention share per layer (the paper's Fig. 3).

For layer l and image-side key j (the image tokens and the gate): f_j = sum over heads, examples and the
text queries after the gate of A[i, j], normalised so that sum_j f_j = 1 per layer (the paper's
normalisation: attention averaged over examples, then normalised over image tokens + gate; the initial
tokens, bos and start-of-image, are read by the queries but left out, docs/protocol.md §8). The shares
are then summed per group: ``gate``, ``last`` (the image token before the gate), ``special`` (tokens of
the image run that are not its image placeholder, e.g. Pixtral's row breaks) and ``image`` (the rest).

The prompt is the task's: by default each image is asked every question of its data (the VQA request
the benchmarks use); ``prompt="caption"`` asks for a caption, any other text is used as the request.
Attention probabilities come from the eager reference (``intervene(..., reference=True)``), under the
chosen condition; a hook on each attention module reduces them as the layer runs, so no layer's tensor
is kept.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

import pandas as pd
import torch

from narrowgate_tasks import prompts

from .output import Result
from .plotting import layer_axis, legend_outside, title
from .subject import Groups, Subject

NAME = "attention"
HELP = "share of the text->image attention taken by the gate, last, image and special tokens, per layer"
GROUPS = ("gate", "last", "image", "special")


def requests_of(examples, prompt: str) -> tuple[list, list[str]]:
    """(images, requests) for ``prompt``: ``vqa`` (every image with each of its data's questions),
    ``caption`` (the caption request) or any other text (that request for every image)."""
    if prompt == "vqa":
        if not examples.questions:
            raise ValueError(f"data {examples.name!r} has no questions for the vqa prompt; use --prompt caption or a text")
        pairs = [(image, prompts.vqa_request(q)) for q in examples.questions.values() for image in examples.images]
        return [image for image, _ in pairs], [request for _, request in pairs]
    request = prompts.CAPTION_REQUEST if prompt == "caption" else prompt
    return list(examples.images), [request] * len(examples)


def image_side(groups: Groups, input_ids) -> dict[str, list[int]]:
    """The image-side keys of one row by group: the gate, the last image token, the run's tokens that are
    not its placeholder (``special``) and the other image tokens."""
    run = list(groups.image)
    placeholder = Counter(input_ids[p] for p in run + list(groups.last)).most_common(1)[0][0]
    return {
        "gate": list(groups.gate),
        "last": list(groups.last),
        "image": [p for p in run if input_ids[p] == placeholder],
        "special": [p for p in run if input_ids[p] != placeholder],
    }


def attention_share(subject: Subject, images, requests, condition) -> pd.DataFrame:
    """Rows (layer, group, share): the text queries' attention to each group of image-side keys, summed
    over examples and normalised per layer (shares sum to 1 per layer)."""
    totals = torch.zeros(subject.num_layers, len(GROUPS), dtype=torch.float64)
    for rows, inputs, layouts, groups in subject.batches(images, requests, "attention"):
        ids = inputs["input_ids"].tolist()
        keys = [image_side(g, ids[layout.row]) for layout, g in zip(layouts, groups)]

        def reduce(layer: int, module, args, output) -> None:
            probs = output[1]
            if probs is None:
                raise RuntimeError("the attention module returned no probabilities; the eager reference must run")
            for b, (layout, named) in enumerate(zip(layouts, keys)):
                queries = layout.text_after
                f = probs[b, :, queries.start : queries.stop].double().sum(dim=(0, 1))
                totals[layer] += torch.stack([f[named[name]].sum() for name in GROUPS]).cpu()

        with ExitStack() as stack:
            for index, layer in enumerate(subject.layers):
                hook = layer.self_attn.register_forward_hook(lambda m, a, o, i=index: reduce(i, m, a, o))
                stack.callback(hook.remove)
            stack.enter_context(subject.under(condition, layouts, reference=True))
            subject.forward(inputs)
    shares = (totals / totals.sum(dim=1, keepdim=True)).numpy()
    return pd.DataFrame(
        [(layer, name, float(shares[layer, g])) for layer in range(subject.num_layers) for g, name in enumerate(GROUPS)],
        columns=["layer", "group", "share"],
    )


def analyse(subject: Subject, examples, condition=None, *, prompt: str = "vqa") -> Result:
    """The attention shares per layer and group of ``examples`` asked ``prompt`` (see ``requests_of``)."""
    images, requests = requests_of(examples, prompt)
    table = attention_share(subject, images, requests, condition)
    wide = table.pivot(index="layer", columns="group", values="share")[list(GROUPS)]
    gate = wide["gate"]
    summary = {
        "prompt": prompt,
        "requests": sorted(set(requests)),
        "prompts_measured": len(requests),
        "normalisation": "image tokens + gate (bos and start-of-image left out)",
        "gate_share_by_layer": gate.round(4).tolist(),
        "gate_share_peak": float(gate.max()),
        "gate_share_peak_layer": int(gate.idxmax()),
        "gate_share_mean": float(gate.mean()),
    }
    report = (
        f"gate's share of the text->image attention: peak {gate.max():.2f} at layer {int(gate.idxmax())}, "
        f"mean {gate.mean():.2f} over {subject.num_layers} layers; image tokens "
        f"{wide['image'].min():.2f}-{wide['image'].max():.2f} ({len(requests)} prompts, {prompt})"
    )
    figure = plot(wide, title("attention share", subject, condition, f"n={len(images)} prompts ({len(examples)} images, {prompt})"), subject.num_layers)
    return Result(NAME, table, summary, figure, report)


def plot(wide: pd.DataFrame, heading: str, num_layers: int):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 3.5))
    edges = list(wide.index - 0.5) + [wide.index[-1] + 0.5]  # one flat step per layer
    ax.stackplot(edges, *(list(wide[name]) + [wide[name].iloc[-1]] for name in GROUPS), labels=GROUPS, step="post")
    ax.set(ylabel="share of text->image attention", ylim=(0, 1), title=heading)
    layer_axis(ax, num_layers)
    legend_outside(ax)
    return figure
