"""Cross-modal attention share per layer (the paper's Fig. 3).

For layer l: f_j = sum over heads and over the text queries after the gate of A[i, j], for every key j up
to and including the gate, normalised so that sum_j f_j = 1 per layer and example, then summed per token
group (gate, last, image, special, text) and averaged over examples. Attention probabilities come from
the eager reference (``intervene(..., reference=True)``), under the chosen condition; a hook on each
attention module reduces its probabilities to those sums as the layer runs, so no layer's tensor is kept.
"""

from __future__ import annotations

from contextlib import ExitStack

import pandas as pd
import torch

from narrowgate_tasks import prompts

from .output import Result
from .subject import GROUPS, Subject

NAME = "attention"
HELP = "share of the text->image attention taken by the gate, last, image, special and text tokens, per layer"


def attention_share(subject: Subject, images, requests, condition) -> pd.DataFrame:
    """Rows (layer, group, share): the mean share per layer and group; shares sum to 1 per layer."""
    totals = torch.zeros(subject.num_layers, len(GROUPS), dtype=torch.float64)
    for rows, inputs, layouts, groups in subject.batches(images, requests, "attention"):

        def reduce(layer: int, module, args, output) -> None:
            probs = output[1]
            if probs is None:
                raise RuntimeError("the attention module returned no probabilities; the eager reference must run")
            for b, (layout, g) in enumerate(zip(layouts, groups)):
                queries = layout.text_after
                # (keys up to the gate,) summed over heads and the text queries after the gate
                f = probs[b, :, queries.start : queries.stop, : g.gate[-1] + 1].double().sum(dim=(0, 1))
                share = torch.stack([f[list(g[name])].sum() if g[name] else f.new_zeros(()) for name in GROUPS])
                totals[layer] += (share / f.sum()).cpu()

        with ExitStack() as stack:
            for index, layer in enumerate(subject.layers):
                hook = layer.self_attn.register_forward_hook(lambda m, a, o, i=index: reduce(i, m, a, o))
                stack.callback(hook.remove)
            stack.enter_context(subject.under(condition, layouts, reference=True))
            subject.forward(inputs)
    shares = (totals / len(images)).numpy()
    return pd.DataFrame(
        [(layer, name, float(shares[layer, g])) for layer in range(subject.num_layers) for g, name in enumerate(GROUPS)],
        columns=["layer", "group", "share"],
    )


def analyse(subject: Subject, examples, condition=None) -> Result:
    """The attention shares per layer and group of ``examples`` asked for a caption."""
    requests = [prompts.CAPTION_REQUEST] * len(examples)
    table = attention_share(subject, examples.images, requests, condition)
    wide = table.pivot(index="layer", columns="group", values="share")[list(GROUPS)]
    summary = {"prompt": prompts.CAPTION_REQUEST, "gate_share_by_layer": wide["gate"].round(4).tolist()}
    return Result(NAME, table, summary, plot(wide, subject))


def plot(wide: pd.DataFrame, subject: Subject):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3.5))
    ax.stackplot(wide.index, *(wide[name] for name in GROUPS), labels=GROUPS)
    ax.set(xlabel="layer", ylabel="share of text->image attention", ylim=(0, 1), title=f"attention share: {subject.pretrained}")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return figure
