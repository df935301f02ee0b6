"""Locate the gate: rank every candidate position by what it carries from the image to the answer.

Candidates: the special tokens before the image, every image token, the family's gate and the first
``--after`` prompt tokens after it, named by group and index (``image[12]``, ``gate[0]``, ``after[0]``)
so that they are the same token in every row. For each candidate, on the patching pairs:

- transfer: its residual at the input of every layer is taken from the base run and written into the
  target run (``record_gate``/``patch_gate`` with the candidate as the "gate"), under the chosen
  condition; transfer = (overlap(p_patched, p_base) - overlap(p_target, p_base)) / (1 -
  overlap(p_target, p_base)), overlaps averaged over pairs (1: the candidate alone carries the answer).
- damage: no query reads it (a knockout of that one key, every layer, without any other condition);
  damage = the mean total-variation distance 1 - overlap(p_knocked, p_target).

The verdict names the candidate that transfers most only when its transfer reaches ``ROUTE`` (0.5: one
position carries at least half of the answer); otherwise it says there is no single-token route and
gives the best transfer and where. Positions before the image carry no image information (causality),
so their transfer is 0, while their damage can be large (attention sinks).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
from tqdm import tqdm

from interventions import (
    GateRecording,
    ImageSpan,
    intervene,
    make_condition,
    patch_gate,
    record_gate,
)
from narrowgate_tasks import prompts

from .patching import overlap, pairs_of
from .output import Result
from .plotting import title
from .subject import Groups, Subject

NAME = "locate"
HELP = "rank every candidate position by how much of the answer patching it transfers and by its knockout damage"
ROUTE = 0.5  # a single position that transfers at least half of the answer is named as the route
TOP = 12  # candidates drawn (the family's gate is always drawn too)


def candidates(groups: Groups, after: int) -> dict[str, int]:
    """Candidate name -> position in this row."""
    named = {f"special[{i}]": p for i, p in enumerate(groups.special)}
    named |= {f"image[{i}]": p for i, p in enumerate(groups.image)}
    named |= {"last": groups.last[0]}
    named |= {f"gate[{i}]": p for i, p in enumerate(groups.gate)}
    named |= {f"after[{i}]": p for i, p in enumerate(groups.after[:after])}
    return named


def _as_gate(layouts, positions: list[tuple[int, ...]]):
    """The layouts with one span whose "gate" is the given positions of each row."""
    return [
        dataclasses.replace(layout, spans=(ImageSpan(start=(), image=range(0), gate=row_positions),))
        for layout, row_positions in zip(layouts, positions)
    ]


def _one_position(recording: GateRecording, index: int) -> GateRecording:
    """The recording of the ``index``-th recorded position of every row."""
    states = {layer: tuple(s[index : index + 1] for s in rows) for layer, rows in recording.states.items()}
    return GateRecording(recording.layers, recording.rows, states)


def locate(subject: Subject, examples, condition, n_pairs: int, after: int, knockout: str, seed: int) -> pd.DataFrame:
    pairs = pairs_of(examples.labels, n_pairs, seed)
    requests = {kind: prompts.vqa_request(q) for kind, q in examples.questions.items()}
    sums: dict[str, list[float]] = {}  # name -> [overlap patched-base, overlap target-base, damage, count]
    names: list[str] | None = None
    ablate = make_condition("gate_ablated", knockout=knockout)
    batches = [
        [pair for pair in pairs if pair[0] == kind][start : start + subject.batch_size]
        for kind in examples.labels
        for start in range(0, sum(pair[0] == kind for pair in pairs), subject.batch_size)
    ]
    for chunk in tqdm(batches, desc="locate", unit="batch", leave=False):
        keys = [str(i) for i in range(len(chunk))]
        texts = [requests[kind] for kind, _, _ in chunk]
        base_in, base_lay, base_groups = subject.encode([examples.images[b] for _, b, _ in chunk], texts, keys)
        target_in, target_lay, target_groups = subject.encode([examples.images[t] for _, _, t in chunk], texts, keys)
        base_named = [candidates(g, after) for g in base_groups]
        target_named = [candidates(g, after) for g in target_groups]
        names = names or list(target_named[0])
        if any(list(named) != names for named in base_named + target_named):
            raise ValueError("locate needs every prompt to have the same token groups (same image size and family)")
        with record_gate(subject.model, _as_gate(base_lay, [tuple(n.values()) for n in base_named])) as recording:
            with subject.under(condition, base_lay):
                p_base = subject.forward(base_in)
        with subject.under(condition, target_lay):
            p_target = subject.forward(target_in)
        with subject.under(None, target_lay):
            p_plain = subject.forward(target_in) if condition is not None else p_target
        for index, name in enumerate(tqdm(names, desc="candidates", unit="position", leave=False)):
            one = _as_gate(target_lay, [(n[name],) for n in target_named])
            with subject.under(condition, target_lay), patch_gate(subject.model, _one_position(recording, index), one):
                p_patched = subject.forward(target_in)
            with intervene(subject.model, ablate, one):
                p_knocked = subject.forward(target_in)
            total = sums.setdefault(name, [0.0, 0.0, 0.0, 0])
            total[0] += float(overlap(p_patched, p_base).sum())
            total[1] += float(overlap(p_target, p_base).sum())
            total[2] += float((1 - overlap(p_knocked, p_plain)).sum())
            total[3] += len(chunk)
    rows = []
    for name, (patched, unpatched, damage, count) in sums.items():
        gain, room = (patched - unpatched) / count, 1 - unpatched / count
        rows.append((name, name.split("[")[0], gain / room if room > 1e-9 else 0.0, damage / count))
    table = pd.DataFrame(rows, columns=["candidate", "group", "transfer", "damage"])
    table["transfer_rank"] = table.transfer.rank(ascending=False, method="min").astype(int)
    table["damage_rank"] = table.damage.rank(ascending=False, method="min").astype(int)
    return table.sort_values(["transfer_rank", "damage_rank"]).reset_index(drop=True)


def verdict(table: pd.DataFrame) -> tuple[str | None, str]:
    """(the located candidate or None, a sentence with its evidence): a candidate is named only when
    patching it alone transfers at least ``ROUTE`` of the answer."""
    top, gate = table.iloc[0], table[table.group == "gate"].sort_values("transfer_rank").iloc[0]
    said_gate = f"the family's gate {gate.candidate} transfers {gate.transfer:.2f} (rank {gate.transfer_rank} of {len(table)})"
    if top.transfer < ROUTE:
        return None, f"no single-token route: best transfer {top.transfer:.2f} at {top.candidate}; {said_gate}"
    runner = f"; next {table.iloc[1].candidate} {table.iloc[1].transfer:.2f}" if len(table) > 1 else ""
    return top.candidate, f"route through {top.candidate}: transfer {top.transfer:.2f}{runner}; {said_gate}"


def analyse(
    subject: Subject, examples, condition=None, *, pairs: int = 48, after: int = 1, knockout: str = "zero", seed: int = 0
) -> Result:
    """Every candidate ranked by transfer and damage (``knockout``: the damage knockout's semantics)."""
    examples.require_labels(NAME)
    table = locate(subject, examples, condition, pairs, after, knockout, seed)
    located, sentence = verdict(table)
    family_gate = table[table.group == "gate"]
    summary = {
        "located": located,
        "verdict": sentence,
        "route_threshold": ROUTE,
        "best_candidate": table.iloc[0].candidate,
        "best_transfer": float(table.iloc[0].transfer),
        "family_gate_transfer": float(family_gate.transfer.max()),
        "family_gate_transfer_rank": int(family_gate.transfer_rank.min()),
        "family_gate_damage_rank": int(family_gate.damage_rank.min()),
        "top_by_damage": table.sort_values("damage_rank").candidate.head(5).tolist(),
        "top_by_transfer": table.candidate.head(5).tolist(),
        "damage_condition": "the candidate's knockout alone (no other condition)",
    }
    report = sentence + "\n" + table.head(8).to_string(index=False)
    figure = plot(table, title("locate the gate", subject, condition, f"n={pairs} pairs"))
    return Result(NAME, table, summary, figure, report)


def plot(table: pd.DataFrame, heading: str):
    import matplotlib.pyplot as plt

    shown = pd.concat([table.head(TOP), table.iloc[TOP:][table.iloc[TOP:].group == "gate"]])[::-1]
    names = [f"{c} (#{r})" for c, r in zip(shown.candidate, shown.transfer_rank)]
    colours = ["tab:green" if g == "gate" else "tab:blue" for g in shown.group]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 0.25 * len(shown) + 1.6), sharey=True)
    left.barh(names, shown.transfer, color=colours)
    left.axvline(ROUTE, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="transfer (patched from base)", title="what carries the answer (#: rank)")
    right.barh(names, shown.damage, color="tab:red")
    right.set(xlabel="damage (1 - overlap when cut)", title="knockout damage")
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    return figure
