"""Per-sample audit records: what exactly was run and blocked, in lmms-eval's samples log.

lmms-eval 0.7.3 gives a model no field of its own in the samples log. The in-memory sample
(``results["samples"][task]`` of ``simple_evaluate``) keeps every JSON-able request argument, so the
wrapper appends ``{"narrowgate": {...}}`` to each request's ``arguments``. When lmms-eval writes
``<date>_samples_<task>.jsonl`` it drops ``arguments``; ``keep_audits_in_sample_files`` (installed
when a narrowgate model is created, whatever launched the run) first lifts the record to a top-level
``"narrowgate"`` field of the written sample: a dict, or a list of dicts for a document with several
requests (multiple choice). Samples of other models are written unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interventions import Condition, Layout
from interventions.session import FAST, REFERENCE

AUDIT_KEY = "narrowgate"

KNOCKOUT_SEMANTICS = {
    "zero": "zero: post-softmax attention probabilities of the cut edges set to 0; rows not renormalised (as published)",
    "mask": "mask: cut edges masked with -inf before the softmax; rows renormalise",
}

# The attention each sample ran, keyed by the engine path.
ATTENTION = {
    FAST: "sdpa: narrowgate's fast path (SDPA; zero = the cut keys' values removed from the affected rows, exact)",
    REFERENCE: "eager: narrowgate's post-softmax reference (probabilities edited after the softmax, the authors' method)",
}


@dataclass(frozen=True)
class Auditor:
    """Writes the audit records of one loaded model: its lmms-eval name, checkpoint, number of decoder
    layers and attention path (``model_wrappers.loading.Checkpoint.attention``)."""

    model: str
    pretrained: str
    num_layers: int
    attention: str

    def record(self, prompt: str, layout: Layout, condition: Condition) -> dict[str, Any]:
        """The audit of one request: the exact prompt, the condition with what it reads, the layout, the cut edges."""
        reads = condition.definition.options
        return {
            "model": self.model,
            "pretrained": self.pretrained,
            "prompt": prompt,
            "condition": condition.to_dict(),
            "description": condition.definition.doc,
            "layers": list(condition.layer_indices(self.num_layers)) if "layers" in reads else None,
            "knockout": KNOCKOUT_SEMANTICS[condition.knockout] if "knockout" in reads else None,
            "attn_implementation": ATTENTION[self.attention],
            "layout": layout.to_dict(),
            # the attention edges cut: queries at positions >= first_query do not read these keys
            "cut": [{"first_query": cut.first_query, "keys": as_ranges(cut.keys)} for cut in condition.knockouts(layout)],
        }


def attach(request: Any, audit: dict[str, Any]) -> None:
    """Append ``audit`` to an lmms-eval Instance's arguments, replacing one attached before (repeats)."""
    args = request.arguments
    if isinstance(args[-1], dict) and AUDIT_KEY in args[-1]:
        args = args[:-1]
    request.arguments = (*args, {AUDIT_KEY: audit})


def lift_audits(samples: list[dict]) -> list[dict]:
    """Copy each logged sample's audit(s) from its ``arguments`` to a top-level ``"narrowgate"`` field, in place."""
    for sample in samples:
        audits = [arg[AUDIT_KEY] for arg in sample.get("arguments", ()) if isinstance(arg, dict) and AUDIT_KEY in arg]
        if audits:
            sample[AUDIT_KEY] = audits[0] if len(audits) == 1 else audits
    return samples


def keep_audits_in_sample_files() -> None:
    """Make lmms-eval's samples writer keep the audit (see the module docstring); idempotent."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    save = EvaluationTracker.save_results_samples
    if getattr(save, "_narrowgate_audits", False):
        return

    def save_results_samples(self, task_name: str, samples: list[dict]) -> None:
        return save(self, task_name, lift_audits(samples))

    save_results_samples._narrowgate_audits = True
    EvaluationTracker.save_results_samples = save_results_samples


def as_ranges(positions: tuple[int, ...]) -> list[list[int]]:
    """Sorted positions as [start, stop) runs, so a 1024-token image logs as one pair."""
    runs: list[list[int]] = []
    for p in sorted(positions):
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return runs
