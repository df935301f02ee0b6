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
MEASURES = ("attention", "contribution")


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


def value_norms(module, values: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads, S): ||W_O^h v_j^h||, the size of what head h adds to the residual per unit of attention
    on key j (Kobayashi et al. 2020), from the layer's value projection output (B, S, kv_heads * d)."""
    size = module.head_dim
    b, s, _ = values.shape
    v = values.reshape(b, s, -1, size).double()
    v = v.repeat_interleave(heads // v.shape[2], dim=2)  # grouped-query heads share their value head
    w = module.o_proj.weight.reshape(-1, heads, size).double()
    gram = torch.einsum("dhe,dhf->hef", w, w)
    return torch.einsum("bshe,hef,bshf->bhs", v, gram, v).clamp_min(0).sqrt()


def attention_share(subject: Subject, images, requests, condition, measure: str = "attention") -> pd.DataFrame:
    """Rows (layer, group, share): the text queries' attention to each group of image-side keys, summed
    over examples and normalised per layer (shares sum to 1 per layer). ``measure="contribution"``
    weighs each head's attention on key j by ||W_O^h v_j^h|| (attention x value norm)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; valid: {', '.join(MEASURES)}")
    totals = torch.zeros(subject.num_layers, len(GROUPS), dtype=torch.float64)
    for rows, inputs, layouts, groups in subject.batches(images, requests, "attention"):
        ids = inputs["input_ids"].tolist()
        keys = [image_side(g, ids[layout.row]) for layout, g in zip(layouts, groups)]
        values: dict[int, torch.Tensor] = {}

        def reduce(layer: int, module, args, output) -> None:
            probs = output[1]
            if probs is None:
                raise RuntimeError("the attention module returned no probabilities; the eager reference must run")
            if measure == "contribution":
                probs = probs.double() * value_norms(module, values.pop(layer), probs.shape[1])[:, :, None, :]
            for b, (layout, named) in enumerate(zip(layouts, keys)):
                queries = layout.text_after
                f = probs[b, :, queries.start : queries.stop].double().sum(dim=(0, 1))
                totals[layer] += torch.stack([f[named[name]].sum() for name in GROUPS]).cpu()

        with ExitStack() as stack:
            for index, layer in enumerate(subject.layers):
                hook = layer.self_attn.register_forward_hook(lambda m, a, o, i=index: reduce(i, m, a, o))
                stack.callback(hook.remove)
                if measure == "contribution":
                    keep = layer.self_attn.v_proj.register_forward_hook(lambda m, a, o, i=index: values.__setitem__(i, o))
                    stack.callback(keep.remove)
            stack.enter_context(subject.under(condition, layouts, reference=True))
            subject.forward(inputs)
    shares = (totals / totals.sum(dim=1, keepdim=True)).numpy()
    return pd.DataFrame(
        [(layer, name, float(shares[layer, g])) for layer in range(subject.num_layers) for g, name in enumerate(GROUPS)],
        columns=["layer", "group", "share"],
    )


def analyse(subject: Subject, examples, condition=None, *, prompt: str = "vqa", measure: str = "attention") -> Result:
    """The attention shares per layer and group of ``examples`` asked ``prompt`` (see ``requests_of``);
    ``measure``: ``attention`` (the paper's) or ``contribution`` (attention x value norm)."""
    images, requests = requests_of(examples, prompt)
    table = attention_share(subject, images, requests, condition, measure)
    wide = table.pivot(index="layer", columns="group", values="share")[list(GROUPS)]
    gate = wide["gate"]
    summary = {
        "prompt": prompt,
        "measure": measure,
        "requests": sorted(set(requests)),
        "prompts_measured": len(requests),
        "normalisation": "image tokens + gate (bos and start-of-image left out)",
        "gate_share_by_layer": gate.round(4).tolist(),
        "gate_share_peak": float(gate.max()),
        "gate_share_peak_layer": int(gate.idxmax()),
        "gate_share_mean": float(gate.mean()),
    }
    report = (
        f"gate's share of the text->image {measure}: peak {gate.max():.2f} at layer {int(gate.idxmax())}, "
        f"mean {gate.mean():.2f} over {subject.num_layers} layers; image tokens "
        f"{wide['image'].min():.2f}-{wide['image'].max():.2f} ({len(requests)} prompts, {prompt})"
    )
    figure = plot(wide, title(f"{measure} share", subject, condition, f"n={len(images)} prompts ({len(examples)} images, {prompt})"), subject.num_layers, measure)
    return Result(NAME, table, summary, figure, report)


def plot(wide: pd.DataFrame, heading: str, num_layers: int, measure: str):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 3.5))
    edges = list(wide.index - 0.5) + [wide.index[-1] + 0.5]  # one flat step per layer
    ax.stackplot(edges, *(list(wide[name]) + [wide[name].iloc[-1]] for name in GROUPS), labels=GROUPS, step="post")
    ax.set(ylabel=f"share of text->image {measure}", ylim=(0, 1), title=heading)
    layer_axis(ax, num_layers)
    legend_outside(ax)
    return figure
