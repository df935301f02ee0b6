"""Progressive knockout (the paper's Fig. A3): knock out the last w layers only, w = 1 ... all, under
the paper's ``gate_ablated`` ([EOI]) and ``gate_only`` (img->text), as one sweep (``conditions`` picks
others, e.g. ``image_ablated``).

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

from .overlap import chance, chi, neighbours
from .output import Result
from .plotting import layer_axis, legend_outside, stairs, title
from .subject import Subject

NAME = "progressive"
HELP = "score vs w when only the last w layers are knocked out, under gate_ablated and gate_only (the paper's Fig. A3)"
CONDITIONS = ("gate_ablated", "gate_only")  # the paper's [EOI] and img->text


def measure(subject: Subject, examples, condition, k: int | None) -> dict[str, object]:
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
        chis[kind] = chi(finals.numpy(), labels, neighbours(labels, k))
    return {"accuracy": float(torch.cat(correct).float().mean()), "probs": torch.cat(probs), "chi": chis}


def analyse(
    subject: Subject, examples, condition=None, *, k: int | None = None, knockout: str = "zero", conditions: tuple[str, ...] = CONDITIONS
) -> Result:
    """Accuracy, agreement and chi per (condition, w) for each of ``conditions`` (default the paper's
    gate_ablated and gate_only; e.g. image_ablated as an option), knockouts with ``knockout`` semantics."""
    examples.require_labels(NAME)
    if condition is not None:
        raise ValueError("progressive sweeps its own conditions (--conditions); drop --condition")
    base = measure(subject, examples, None, k)
    rows = [("baseline", 0, base["accuracy"], 1.0, *base["chi"].values())]
    for name in conditions:
        for w in range(1, subject.num_layers + 1):
            result = measure(subject, examples, make_condition(name, layers=f"last:{w}", knockout=knockout), k)
            agreement = float(torch.minimum(result["probs"], base["probs"]).sum(dim=-1).mean())
            rows.append((name, w, result["accuracy"], agreement, *result["chi"].values()))
    table = pd.DataFrame(rows, columns=["condition", "w", "accuracy", "agreement", *(f"chi_{kind}" for kind in examples.labels)])
    chance_level = sum(chance(labels) for labels in examples.labels.values()) / len(examples.labels)
    summary = {
        "knockout": knockout,
        "conditions": list(conditions),
        "baseline_accuracy": base["accuracy"],
        "label_kinds": list(examples.labels),
        "k": {kind: neighbours(labels, k) for kind, labels in examples.labels.items()},
        "chance_chi": chance_level,
    }
    everything = table[table.w == subject.num_layers].set_index("condition").accuracy
    report = f"accuracy: baseline {base['accuracy']:.2f}; every layer knocked out: " + ", ".join(
        f"{name} {everything[name]:.2f}" for name in conditions
    )
    heading = title(f"progressive knockout ({knockout})", subject, None, f"n={len(examples)} images x {len(examples.labels)} questions")
    return Result(NAME, table, summary, plot(table, chance_level, heading, subject.num_layers), report)


def plot(table: pd.DataFrame, chance_level: float, heading: str, num_layers: int):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    chi_columns = [c for c in table.columns if c.startswith("chi_")]
    base = table[table.condition == "baseline"].iloc[0]
    for name, curve in table[table.condition != "baseline"].groupby("condition", sort=False):
        stairs(left, curve.w, curve.accuracy, label=name, linewidth=1.5)
        stairs(right, curve.w, curve[chi_columns].mean(axis=1), label=name, linewidth=1.5)
    left.axhline(base.accuracy, color="grey", linestyle=":", label="baseline")
    right.axhline(base[chi_columns].mean(), color="grey", linestyle=":", label="baseline")
    right.axhline(chance_level, color="black", linestyle="--", linewidth=0.8, label="chance")
    for ax, ylabel, what in ((left, "accuracy", "answer accuracy"), (right, "chi (mean over labels)", "last token vs label")):
        ax.set(ylabel=ylabel, ylim=(0, 1.02), title=what)
        layer_axis(ax, num_layers + 1, label="w (last w layers knocked out)")
        ax.set_xlim(0.5, num_layers + 0.5)
    legend_outside(right)
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    return figure
