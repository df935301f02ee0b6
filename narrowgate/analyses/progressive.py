"""Progressive knockout (the paper's Fig. A3): knock out the last w layers only, w = 1 ... all, under
``gate_ablated`` and ``image_ablated``, as one sweep.

Every image is asked the question of each label kind; per (condition, w): ``accuracy`` (the answer's
first token is the most probable next token), ``agreement`` with the unablated run (sum_v min(p, p_base))
and ``chi`` (neighbourhood overlap of the last prompt token's final-layer output with the asked label, the
paper's measure). The knockout semantics follow ``--knockout``.
"""

from __future__ import annotations

import pandas as pd
import torch

from interventions import make_condition
from narrowgate_tasks import prompts

from .overlap import chi
from .output import Result
from .subject import Subject

NAME = "progressive"
HELP = "score vs w when only the last w layers are knocked out, under gate_ablated and image_ablated"
CONDITIONS = ("gate_ablated", "image_ablated")


def measure(subject: Subject, examples, condition, k: int) -> dict[str, object]:
    """Accuracy, next-token distributions and chi per label kind of one condition (None: none)."""
    last_layer = subject.num_layers - 1
    correct, probs, chis = [], [], {}
    for kind, labels in examples.labels.items():
        request = prompts.vqa_request(examples.questions[kind])
        finals = torch.zeros(len(examples), subject.model.config.get_text_config().hidden_size)
        for rows, inputs, layouts, _ in subject.batches(examples.images, [request] * len(examples), f"{kind}"):

            def keep(layer: int, hidden: torch.Tensor) -> None:
                if layer == last_layer:
                    finals[rows.start : rows.stop] = hidden[:, -1].float().cpu()

            with subject.layer_outputs(keep), subject.under(condition, layouts):
                p = subject.forward(inputs)
            probs.append(p)
            answers = torch.tensor([subject.answer_id(labels[i]) for i in rows])
            correct.append(p.argmax(dim=-1) == answers)
        chis[kind] = chi(finals.numpy(), labels, min(k, len(examples) - 1))
    return {"accuracy": float(torch.cat(correct).float().mean()), "probs": torch.cat(probs), "chi": chis}


def analyse(subject: Subject, examples, condition=None, *, k: int = 30, knockout: str = "zero") -> Result:
    """Accuracy, agreement and chi per (condition, w), the knockouts with ``knockout`` semantics."""
    examples.require_labels(NAME)
    if condition is not None:
        raise ValueError("progressive sweeps its own conditions (gate_ablated, image_ablated); drop --condition")
    base = measure(subject, examples, None, k)
    rows = [("baseline", 0, base["accuracy"], 1.0, *base["chi"].values())]
    for name in CONDITIONS:
        for w in range(1, subject.num_layers + 1):
            result = measure(subject, examples, make_condition(name, layers=f"last:{w}", knockout=knockout), k)
            agreement = float(torch.minimum(result["probs"], base["probs"]).sum(dim=-1).mean())
            rows.append((name, w, result["accuracy"], agreement, *result["chi"].values()))
    table = pd.DataFrame(rows, columns=["condition", "w", "accuracy", "agreement", *(f"chi_{k}" for k in examples.labels)])
    summary = {"knockout": knockout, "baseline_accuracy": base["accuracy"], "label_kinds": list(examples.labels)}
    return Result(NAME, table, summary, plot(table, subject))


def plot(table: pd.DataFrame, subject: Subject):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    chi_columns = [c for c in table.columns if c.startswith("chi_")]
    base = table[table.condition == "baseline"].iloc[0]
    for name, curve in table[table.condition != "baseline"].groupby("condition", sort=False):
        left.plot(curve.w, curve.accuracy, marker="o", label=name)
        right.plot(curve.w, curve[chi_columns].mean(axis=1), marker="o", label=name)
    left.axhline(base.accuracy, color="grey", linestyle=":", label="baseline")
    right.axhline(base[chi_columns].mean(), color="grey", linestyle=":", label="baseline")
    left.set(xlabel="w (last w layers knocked out)", ylabel="accuracy", ylim=(0, 1.02), title="answer accuracy")
    right.set(xlabel="w (last w layers knocked out)", ylabel="chi (mean over labels)", ylim=(0, 1.02), title="last token vs label")
    left.legend(fontsize=8)
    figure.suptitle(f"progressive knockout: {subject.pretrained}", fontsize=9)
    return figure
