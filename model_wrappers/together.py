"""Answers of several conditions computed in one pass, served to lmms-eval one condition at a time.

lmms-eval evaluates one model under one condition per run (its results and samples files, one audit
per sample). Inside ``NarrowgateModel.conditions_together(conditions)`` the first ``generate_until``
call runs its requests under every condition that lacks their answers, side by side in one batch
(``interventions.generate_each``), and keeps each condition's answers and audits here (text and a
small record per request and condition) until the block ends; the run of each later condition is
answered from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from interventions import Condition

Answer = tuple[str, dict[str, Any]]  # the generated text and the sample's audit record


def request_key(request) -> tuple:
    """What makes two generation requests the same question: document, prompt and generation options."""
    context, gen_kwargs, _, doc_id, task, split = request.args[:6]
    return task, split, doc_id, context, repr(sorted(gen_kwargs.items()))


@dataclass
class Together:
    """conditions: computed together. max_rows: at most this many rows (conditions x batch) per
    forward (None: all conditions of a batch at once). answers[condition][request_key]."""

    conditions: tuple[Condition, ...]
    max_rows: int | None = None
    answers: dict[Condition, dict[tuple, Answer]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions_together: a condition is listed twice in {self.conditions}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be a positive integer, got {self.max_rows}")

    def missing(self, condition: Condition, requests: Sequence) -> list:
        return [r for r in requests if request_key(r) not in self.answers.get(condition, {})]

    def lacking(self, requests: Sequence) -> list[Condition]:
        """The conditions that lack an answer to any of ``requests``."""
        return [c for c in self.conditions if self.missing(c, requests)]

    def store(self, requests: Sequence, answers: dict[Condition, list[Answer]]) -> None:
        for condition, rows in answers.items():
            self.answers.setdefault(condition, {}).update(zip(map(request_key, requests), rows))

    def serve(self, condition: Condition, requests: Sequence) -> list[Answer]:
        return [self.answers[condition][request_key(r)] for r in requests]

    def groups(self, conditions: Sequence[Condition], batch: int) -> list[list[Condition]]:
        """``conditions`` in passes of at most ``max_rows`` rows (at least one condition per pass)."""
        per_pass = len(conditions) if self.max_rows is None else max(1, self.max_rows // batch)
        return [list(conditions[i : i + per_pass]) for i in range(0, len(conditions), per_pass)]
