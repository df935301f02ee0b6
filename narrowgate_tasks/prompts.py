"""The prompt contract between narrowgate's tasks and the family wrappers.

A task supplies the *request*, never a family's prompt format:

- VQA: ``{question}\\nAnswer the question using a single word or phrase.`` (``vqa_request``);
- captioning: ``Provide a one-sentence caption for the provided image.`` (``CAPTION_REQUEST``).

The family's prompt format (``interventions.families``) owns everything around it: where the image
goes, chat template or none. Chat families put the request in the user turn and let the template open
the assistant turn. For a text-completion family (the authors ran Chameleon this way, docs/protocol.md
§4) the task ends the request with the cue that starts the answer, ``completion_suffix(request)``:
``" Answer:"`` for a short-answer request (the request ends with ``VQA_INSTRUCTION``), nothing for the
caption request — exactly the authors' two Chameleon prompts. Which models get the cue is the VQA
tasks' per-model prompt variant, lmms-eval's ``lmms_eval_specific_kwargs`` (``_prompt_variants_vqa.yaml``,
read by ``model_variant``), so that a model never imports task code.

The answer is the model's continuation only (new tokens, decoded). Every narrowgate task then scores
``first_line(continuation)``: the first non-empty line, stripped — the same for every family, so a
family that keeps talking after its answer is not penalised differently from one that stops. Tasks
set no stop strings (``until: []``), as the authors generated up to the token limit; a stop string
such as ``"\\n\\n"`` would cut a continuation that starts with blank lines down to nothing.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

VARIANTS_FILE = Path(__file__).with_name("_prompt_variants_vqa.yaml")
VQA_INSTRUCTION = "Answer the question using a single word or phrase."
CAPTION_REQUEST = "Provide a one-sentence caption for the provided image."
COMPLETION_CUE = "Answer:"


def vqa_request(question: str) -> str:
    """The VQA request for one question (the paper's and LLaVA's short-answer instruction)."""
    return f"{question}\n{VQA_INSTRUCTION}"


def completion_suffix(request: str) -> str:
    """What a text-completion family appends after ``request``: ``" Answer:"`` after a short-answer
    request, ``""`` otherwise (see the module docstring)."""
    return f" {COMPLETION_CUE}" if request.rstrip().endswith(VQA_INSTRUCTION) else ""


@cache
def prompt_variants() -> dict[str, dict[str, Any]]:
    """The VQA tasks' ``lmms_eval_specific_kwargs``: model name (or ``default``) -> its prompt variant."""
    return yaml.safe_load(VARIANTS_FILE.read_text())["lmms_eval_specific_kwargs"]


def model_variant(model: str | None) -> dict[str, Any]:
    """The prompt variant lmms-eval gives ``model`` (an lmms-eval model name): its own entry, else ``default``."""
    variants = prompt_variants()
    return variants.get(model, variants["default"])


def model_request(request: str, variant: dict[str, Any] | None) -> str:
    """``request`` as a model with prompt ``variant`` (``model_variant``; None: default) is given it."""
    return request + completion_suffix(request) if (variant or {}).get("text_completion") else request


def first_line(continuation: str) -> str:
    """The scored answer: the first non-empty line of the continuation, stripped ("" if there is none)."""
    for line in continuation.splitlines():
        if line.strip():
            return line.strip()
    return ""
