"""Generation under conditions: lmms-eval's generation options turned into transformers' ``generate``
arguments, requests batched (left padding, request order kept) and generated under one or several
conditions side by side (``interventions.generate_each``), a pass that runs out of GPU memory redone in
halves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.utils import Collator
from loguru import logger
from tqdm import tqdm

from interventions import Condition, generate_each
from model_wrappers.audit import Auditor
from model_wrappers.encoding import Encoder, request_images
from model_wrappers.together import Answer, Together

# Generation options a task may set, passed to transformers' generate(); "until" is handled here.
GENERATE_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass
class GenerationOptions:
    """Turns a task's ``generation_kwargs`` into ``generate`` arguments and stop strings; warns once per
    ignored option (on the main process)."""

    name: str
    image_ids: tuple[int, ...]
    pad_token_id: int | None
    main: bool = True
    warned: set[str] = field(default_factory=set)

    def __call__(self, gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        ignored = sorted(set(gen_kwargs) - {"until", *GENERATE_OPTIONS} - self.warned)
        if ignored and self.main:
            self.warned.update(ignored)
            logger.warning(
                f"{self.name}: ignoring generation_kwargs {', '.join(ignored)} (used: until, {', '.join(GENERATE_OPTIONS)})"
            )
        until = gen_kwargs.get("until") or []
        until = [stop for stop in ([until] if isinstance(until, str) else until) if stop]
        options = {name: gen_kwargs[name] for name in GENERATE_OPTIONS if gen_kwargs.get(name) is not None}
        options.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        # Greedy unless the task asks for sampling (do_sample, or a positive temperature).
        sample = bool(options.get("do_sample")) or float(options.get("temperature", 0) or 0) > 0
        options["do_sample"] = sample
        if not sample:
            for name in ("temperature", "top_p", "top_k"):
                options.pop(name, None)
        options["num_beams"] = int(options.get("num_beams", 1))
        options["suppress_tokens"] = list(self.image_ids)  # a generated placeholder breaks the image-token count
        options["pad_token_id"] = self.pad_token_id
        return options, until


@dataclass
class Generator:
    """Generates the answers of lmms-eval requests under conditions on one loaded checkpoint.

    checkpoint: ``model_wrappers.loading.Checkpoint``. running: what an error about a request says would
    have run (called at error time, so that it names the current condition)."""

    checkpoint: Any
    encoder: Encoder
    auditor: Auditor
    batch_size: int
    main: bool
    running: Callable[[], str]
    options: GenerationOptions = field(init=False)

    def __post_init__(self) -> None:
        self.options = GenerationOptions(
            self.auditor.model, self.encoder.ids.image, self.checkpoint.tokenizer.pad_token_id, self.main
        )

    def generate(
        self, requests: list[Instance], conditions: list[Condition], task_dict: dict, together: Together | None = None
    ) -> dict[Condition, list[Answer]]:
        """Every request's (text, audit) under each of ``conditions``, in request order; ``together`` caps
        the rows of one forward (``Together.groups``)."""
        collator = Collator(
            requests, sort_fn=lambda r: (-len(r.args[0]), r.args[3]), group_fn=lambda r: r.args[1], grouping=True
        )
        answers: dict[Condition, list[Answer]] = {condition: [] for condition in conditions}
        names = "+".join(c.name for c in conditions) if len(conditions) < 4 else f"{len(conditions)} conditions"
        progress = tqdm(total=len(requests), disable=not self.main, desc=f"{self.auditor.model} generate ({names})")
        for batch in collator.get_batched(n=self.batch_size):
            contexts = [request.args[0] for request in batch]
            wheres, keys, visuals = zip(*(request_images(request, task_dict, self.running()) for request in batch))
            prompts = [self.encoder.format_prompt(text, len(images)) for text, images in zip(contexts, visuals)]
            inputs, layouts = self.encoder.encode(prompts, list(visuals), list(wheres), list(keys))
            options, until = self.options(batch[0].args[1])
            groups = together.groups(conditions, len(batch)) if together is not None else [conditions]
            texts = {}
            for group in groups:
                texts.update(self.generate_batch(inputs, layouts, group, options))
            for condition in conditions:
                for prompt, layout, text in zip(prompts, layouts, texts[condition]):
                    for stop in until:
                        text = text.split(stop)[0]
                    answers[condition].append((text, self.auditor.record(prompt, layout, condition)))
            progress.update(len(batch))
        progress.close()
        return {condition: collator.get_original(rows) for condition, rows in answers.items()}

    def generate_batch(self, inputs, layouts, conditions: list[Condition], options) -> dict[Condition, list[str]]:
        """The decoded generations of one batch under ``conditions`` in one pass; a pass that runs out of
        GPU memory is redone in two halves, down to one condition (then the error says what to do)."""
        model, name = self.checkpoint.model, self.auditor.model
        try:
            with torch.inference_mode():
                generated = generate_each(model, conditions, layouts, inputs, reference=self.checkpoint.reference, **options)
        except torch.OutOfMemoryError as error:
            if len(conditions) == 1:
                raise torch.OutOfMemoryError(
                    f"{name}: out of memory generating a batch of {len(layouts)} under {conditions[0].name}; "
                    f"lower --batch_size / model_args batch_size ({error})"
                ) from error
            torch.cuda.empty_cache()
            half = len(conditions) // 2
            logger.warning(f"{name}: out of memory with {len(conditions)} conditions side by side; splitting the pass")
            return {
                **self.generate_batch(inputs, layouts, conditions[:half], options),
                **self.generate_batch(inputs, layouts, conditions[half:], options),
            }
        texts = self.checkpoint.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        batch = len(layouts)
        return {condition: texts[i * batch : (i + 1) * batch] for i, condition in enumerate(conditions)}
