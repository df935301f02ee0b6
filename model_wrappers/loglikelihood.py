"""Loglikelihood requests under a condition: log P(continuation | image + prompt) and whether greedy
decoding would produce the continuation, one request at a time.
"""

from __future__ import annotations

from typing import Any

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from tqdm import tqdm

from interventions import Condition, intervene
from model_wrappers.audit import Auditor, attach
from model_wrappers.encoding import Encoder, NarrowgateInputError, request_images


def loglikelihoods(
    requests: list[Instance],
    condition: Condition,
    checkpoint: Any,
    encoder: Encoder,
    auditor: Auditor,
    task_dict: dict,
    running: str,
    main: bool = True,
) -> list[GenerationResult]:
    """(log P(continuation | image + prompt), is_greedy) of each request under ``condition``, its audit attached.

    Each pair is wrapped in a GenerationResult: lmms-eval 0.7.3's evaluator turns any other non-str
    model output into its string (``unwrap_generation_output``), which breaks multiple-choice scoring.
    ``checkpoint``: ``model_wrappers.loading.Checkpoint``; ``running`` as in ``encoding.request_images``.
    """
    model = checkpoint.model
    results = []
    for request in tqdm(requests, disable=not main, desc=f"{auditor.model} loglikelihood"):
        context, continuation = request.args[:2]
        if len(request.args) < 6:
            raise NarrowgateInputError(
                "a loglikelihood request without a document (e.g. acc_mutual_info's unconditional requests) has no image; "
                "narrowgate conditions need one"
            )
        where, key, images = request_images(request, task_dict, running)
        if callable(continuation):
            _, doc_id, task, split = request.args[2:6]
            continuation = continuation(task_dict[task][split][doc_id])
        prompt = encoder.format_prompt(context, len(images))
        context_inputs, _ = encoder.encode([prompt], [images], [where], [key])
        inputs, layouts = encoder.encode([prompt + continuation], [images], [where], [key])
        context_ids, full_ids = context_inputs["input_ids"][0], inputs["input_ids"][0]
        # Score from the first token that the continuation changed (a tokenizer may merge across the boundary).
        n_context = min(len(context_ids), len(full_ids))
        differs = (context_ids[:n_context] != full_ids[:n_context]).nonzero()
        start = int(differs[0]) if len(differs) else n_context
        if start >= len(full_ids):
            raise NarrowgateInputError(f"{where}: the continuation {continuation!r} adds no token to the prompt")
        with torch.inference_mode(), intervene(model, condition, layouts, reference=checkpoint.reference):
            logits = model(**inputs).logits[0]
        logprobs = torch.log_softmax(logits[start - 1 : -1].float(), dim=-1)
        targets = full_ids[start:]
        total = logprobs.gather(-1, targets[:, None]).sum().item()
        greedy = bool((logprobs.argmax(-1) == targets).all())
        attach(request, auditor.record(prompt + continuation, layouts[0], condition))
        results.append(GenerationResult(text=(total, greedy)))
    return results
