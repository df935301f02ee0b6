"""The prompt contract between narrowgate's tasks and the family wrappers.

A task supplies the *request*, never a family's prompt format:

- VQA: ``{question}\\nAnswer the question using a single word or phrase.`` (``vqa_request``);
- captioning: ``Provide a one-sentence caption for the provided image.`` (``CAPTION_REQUEST``).

The family wrapper owns everything around it: where the image goes, chat template or none, and the
cue that starts the answer. Chat families put the request in the user turn and let the template open
the assistant turn. Text-completion families (the authors ran Chameleon this way, docs/protocol.md §4)
append ``completion_suffix(request)`` after the request: ``" Answer:"`` for a short-answer request
(the request ends with ``VQA_INSTRUCTION``), nothing for the caption request — exactly the authors'
two Chameleon prompts. The rule keys on the instruction text, so it also holds for lmms-eval's own
VQA-style tasks that use the same instruction.

The answer is the model's continuation only (new tokens, decoded). Every narrowgate task then scores
``first_line(continuation)``: the first non-empty line, stripped — the same for every family, so a
family that keeps talking after its answer is not penalised differently from one that stops. Tasks
set no stop strings (``until: []``), as the authors generated up to the token limit; a stop string
such as ``"\\n\\n"`` would cut a continuation that starts with blank lines down to nothing.
"""

from __future__ import annotations

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


def first_line(continuation: str) -> str:
    """The scored answer: the first non-empty line of the continuation, stripped ("" if there is none)."""
    for line in continuation.splitlines():
        if line.strip():
            return line.strip()
    return ""
