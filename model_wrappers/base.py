"""The one lmms-eval model class behind every family x condition.

``NarrowgateModel`` loads a checkpoint with the family's transformers class and ``AutoProcessor``,
formats each request's text into the family's prompt, finds where the images and their gates sit
(``interventions.find_layouts``) and runs the model inside ``interventions.intervene`` so that the
condition holds for the prompt and for every generated token. What differs between families (prompt
format, processor options, dtype quirks) lives in one small subclass per family.

Every request gets an audit record (``model_wrappers.audit``): the exact prompt given to the processor,
the condition with its layers and knockout semantics, the image/gate positions and the attention edges
that were cut. It is the ``"narrowgate"`` field of each sample in ``<date>_samples_<task>.jsonl``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import Collator
from loguru import logger
from PIL import Image
from tqdm import tqdm

from interventions import (
    Condition,
    FamilySpec,
    Layout,
    family_spec,
    find_layouts,
    generate_each,
    intervene,
    make_condition,
)
from interventions.session import REFERENCE, configured_attention
from model_wrappers.audit import ATTENTION, KNOCKOUT_SEMANTICS, as_ranges, attach, keep_audits_in_sample_files
from model_wrappers.together import Answer, Together

DTYPES: dict[str, torch.dtype | str] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "auto": "auto",
}

# Generation options a task may set, passed to transformers' generate(); "until" is handled here.
GENERATE_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 128


def checkpoint_folder(pretrained: str) -> bool:
    """Whether ``pretrained`` names a local checkpoint (then it must be one) rather than a hub id.

    transformers reads any other string as a hub id, so a mistyped path would surface as a complaint
    about repo-id syntax or the network; a path-like name that is not a checkpoint folder fails here instead.
    """
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"pretrained={pretrained}: the folder {path.resolve()} holds no config.json, so it is not a "
                "transformers checkpoint (write one with save_pretrained, or `narrowgate tiny`)"
            )
        return True
    if path.exists():
        raise NotADirectoryError(f"pretrained={pretrained} is a file; give the checkpoint's folder")
    if pretrained.startswith(("/", ".", "~")) or pretrained.count("/") > 1 or "\\" in pretrained:
        raise FileNotFoundError(f"pretrained={pretrained}: no checkpoint folder at {path.resolve()}")
    return False


class NarrowgateInputError(ValueError):
    """A request the wrapper cannot run as asked (no image, malformed image span); names the document."""


class NarrowgateModel(lmms):
    """lmms-eval simple model: one family's checkpoint under one intervention condition.

    Subclasses set ``family`` and ``prompt_template`` (with ``{images}`` and ``{text}``); the
    registry makes a further subclass per ``<family>_<condition>`` name that fixes ``registered_condition``.
    """

    is_simple = True
    family: ClassVar[str]
    prompt_template: ClassVar[str]
    registered_condition: ClassVar[str | None] = None
    processor_kwargs: ClassVar[dict[str, Any]] = {}  # extra keyword arguments of every processor call

    def __init__(
        self,
        pretrained: str,
        condition: str | None = None,
        layers: str | int | None = None,
        knockout: str = "zero",
        k: int = 10,
        seed: int = 0,
        cut: str | None = None,
        heads: str | int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        device_map: str | None = None,
        attn_implementation: str = "sdpa",
        batch_size: int | str = 1,
        trust_remote_code: bool = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(
                f"{self.model_name}: unknown model_args {', '.join(sorted(unknown))}; valid: pretrained, condition, "
                "layers, knockout, k, seed, cut, heads, device, dtype, device_map, attn_implementation, batch_size, "
                "trust_remote_code"
            )
        if self.registered_condition is not None and condition not in (None, self.registered_condition):
            raise ValueError(
                f"model {self.model_name} runs condition {self.registered_condition!r}, but model_args say "
                f"condition={condition}; use --model {self.family}_{condition}"
            )
        self.pretrained = str(pretrained)
        self.spec = self.load_spec(trust_remote_code)
        self.condition = make_condition(
            condition or self.registered_condition or "baseline",
            layers=layers, knockout=knockout, k=k, seed=seed, cut=cut, heads=heads,
        )
        try:
            self.batch_size = int(batch_size)
        except ValueError:
            raise ValueError(
                f"batch_size must be a positive integer, got {batch_size!r} (auto is not supported)"
            ) from None
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

        # Data parallel (torchrun / accelerate launch): one full copy per process, on this process's
        # device; lmms-eval's evaluator shards the documents and gathers the results.
        self._rank = int(os.environ.get("RANK", "0"))
        self._world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if self._world_size > 1 and device_map is not None:
            raise ValueError(
                "device_map spreads one model over several devices; do not combine it with data parallel runs"
            )
        if self._world_size > 1 and torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = "bfloat16" if self._device.type == "cuda" else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")

        import transformers

        model_class = getattr(transformers, self.spec.model_class)
        local = checkpoint_folder(self.pretrained)
        try:
            self._model = model_class.from_pretrained(
                self.pretrained,
                dtype=DTYPES[dtype],
                device_map=device_map,
                attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
            ).eval()
        except OSError as error:
            if local:
                raise
            raise OSError(
                f"{self.model_name}: pretrained={self.pretrained} is not a local checkpoint folder (no folder "
                f"{Path(self.pretrained).resolve()}) and could not be loaded as a Hugging Face hub id"
                f"{' (HF_HUB_OFFLINE=1: only already downloaded models load)' if os.environ.get('HF_HUB_OFFLINE') else ''}: "
                f"{error}"
            ) from error
        if device_map is None:
            self._model.to(self._device)
        else:
            self._device = self._model.device  # inputs go where the embeddings are
        self.processor = transformers.AutoProcessor.from_pretrained(
            self.pretrained, trust_remote_code=trust_remote_code
        )
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation continues every row at the same position
        self.family_ids = self.spec.token_ids(self.tokenizer)
        self.num_layers = self._model.config.get_text_config().num_hidden_layers
        # eager runs the post-softmax reference, sdpa the fast path; anything else fails here, not at the first sample
        self.attention = configured_attention(self._model)
        self.condition.layer_indices(self.num_layers)  # layer spec out of range: fail before evaluating
        self.condition.head_indices(self._model.config.get_text_config().num_attention_heads)
        self._warned: set[str] = set()
        self._together: Together | None = None  # conditions_together()
        keep_audits_in_sample_files()

    # --- names, devices, conditions -----------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.family if self.registered_condition is None else f"{self.family}_{self.registered_condition}"

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def reference(self) -> bool:
        """Whether the model runs narrowgate's eager post-softmax reference (loaded with attn_implementation=eager)."""
        return self.attention == REFERENCE

    def set_condition(self, condition: Condition) -> None:
        """Run later requests under ``condition`` on the same weights (the grid switches conditions this way)."""
        if not isinstance(condition, Condition):
            raise TypeError(
                f"set_condition takes an interventions.Condition (see make_condition), got {type(condition).__name__}"
            )
        if self.registered_condition is not None and condition.name != self.registered_condition:
            raise ValueError(
                f"model {self.model_name} runs condition {self.registered_condition!r}; load the family model "
                f"({self.family}) to switch conditions"
            )
        condition.layer_indices(self.num_layers)
        self.condition = condition

    def clean(self) -> None:
        # lmms-eval's clean() deletes every nn.Module attribute after a run; keep the weights so that
        # the same instance can be evaluated again under another condition.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- family hooks -------------------------------------------------------------------------

    def load_spec(self, trust_remote_code: bool) -> FamilySpec:
        """The image-token structure of the checkpoint: the family's declared one (the generic family derives it)."""
        return family_spec(self.family)

    def format_prompt(self, text: str, n_images: int) -> str:
        """The exact text given to the processor: the family's prompt around the task's text."""
        return self.prompt_template.format(images=self.spec.placeholder * n_images, text=text)

    def prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Family dtype quirks on the processor output (already on the model's device)."""
        return inputs

    # --- shared machinery ---------------------------------------------------------------------

    def _visuals(self, request: Instance) -> tuple[str, str, list]:
        """(where, example key, images) of a request; no image is an error naming the document."""
        doc_to_visual, doc_id, task, split = request.args[2:6]
        where = f"task {task!r} doc_id {doc_id}"
        key = f"{task}/{split}/{doc_id}"
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if callable(doc_to_visual) else None
        visuals = [v for v in (visuals or []) if v is not None]
        if not visuals:
            raise NarrowgateInputError(
                f"{where}: the sample has no image; every narrowgate condition needs one "
                f"(condition {self.condition.name!r}, model {self.model_name}). Fix the task's doc_to_visual or drop the document."
            )
        others = sorted({type(v).__name__ for v in visuals if not isinstance(v, Image.Image)})
        if others:
            raise NarrowgateInputError(
                f"{where}: narrowgate models take PIL images, got {', '.join(others)} (video or audio?)"
            )
        return where, key, visuals

    def _encode(
        self, prompts: list[str], visuals: list[list], wheres: list[str], keys: list[str]
    ) -> tuple[dict[str, Any], tuple[Layout, ...]]:
        """Processor output on the model's device and the layout of every row (checked against the images).

        ``keys`` name the examples: per-example random choices (random_image_ablated, gate_randomized) are
        seeded by them, so they differ between documents even when the token ids are equal (image
        placeholders are the same for every image) and do not depend on batch composition.
        """
        images = [image for row in visuals for image in row]
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt", **self.processor_kwargs)
        inputs = self.prepare_inputs({name: value.to(self.device) for name, value in inputs.items()})
        layouts = []
        for row, where in enumerate(wheres):
            try:
                (layout,) = find_layouts(
                    inputs["input_ids"][row : row + 1], inputs["attention_mask"][row : row + 1], self.family_ids
                )
            except ValueError as error:
                raise NarrowgateInputError(f"{where}: malformed image span in the processed prompt: {error}") from error
            if len(layout.spans) != len(visuals[row]):
                raise NarrowgateInputError(
                    f"{where}: {len(visuals[row])} image(s) given but {len(layout.spans)} image span(s) in the processed "
                    f"prompt {prompts[row]!r}; the condition would not act on every image"
                )
            layouts.append(dataclasses.replace(layout, row=row, key=keys[row]))
        return inputs, tuple(layouts)

    def _audit(self, prompt: str, layout: Layout, condition: Condition) -> dict[str, Any]:
        reads = condition.definition.options
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "prompt": prompt,
            "condition": condition.to_dict(),
            "description": condition.definition.doc,
            "layers": list(condition.layer_indices(self.num_layers)) if "layers" in reads else None,
            "knockout": KNOCKOUT_SEMANTICS[condition.knockout] if "knockout" in reads else None,
            "attn_implementation": ATTENTION[self.attention],
            "layout": layout.to_dict(),
            # the attention edges cut: queries at positions >= first_query do not read these keys
            "cut": [
                {"first_query": cut.first_query, "keys": as_ranges(cut.keys)} for cut in condition.knockouts(layout)
            ],
        }

    def _generate_options(self, gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        ignored = sorted(set(gen_kwargs) - {"until", *GENERATE_OPTIONS} - self._warned)
        if ignored and self.rank == 0:
            self._warned.update(ignored)
            logger.warning(
                f"{self.model_name}: ignoring generation_kwargs {', '.join(ignored)} (used: until, {', '.join(GENERATE_OPTIONS)})"
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
        options["suppress_tokens"] = list(self.family_ids.image)  # a generated placeholder breaks the image-token count
        options["pad_token_id"] = self.tokenizer.pad_token_id
        return options, until

    # --- lmms-eval API ------------------------------------------------------------------------

    @contextmanager
    def conditions_together(self, conditions: Sequence[Condition], max_rows: int | None = None) -> Iterator[None]:
        """Inside the block, the first ``generate_until`` under any of ``conditions`` generates under all of
        them in one pass (each batch's rows once per condition, side by side, the prefix they share prefilled
        once: ``generate_each``); the runs of the others are answered from it, with their own audits
        (``model_wrappers.together``).
        ``max_rows`` caps the rows of one forward (conditions x batch size); on a CUDA out-of-memory
        error a pass splits its conditions in halves by itself. Outputs equal one condition at a time."""
        self._together = Together(tuple(c for c in conditions if self._fits(c)), max_rows)
        try:
            yield
        finally:
            self._together = None

    def _fits(self, condition: Condition) -> bool:
        """Whether the condition's layers exist in this model (``set_condition`` refuses the others, by name)."""
        try:
            condition.layer_indices(self.num_layers)
        except ValueError:
            return False
        return True

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Batched (left padding), greedy unless asked, cut at the first ``until`` string; request order kept."""
        together = self._together
        if together is not None and self.condition in together.conditions:
            missing = together.missing(self.condition, requests)
            if missing:
                together.store(missing, self._generate(missing, together.lacking(missing)))
            answers = together.serve(self.condition, requests)
        else:
            answers = self._generate(requests, [self.condition])[self.condition]
        for request, (_, audit) in zip(requests, answers):
            attach(request, audit)
        return [text for text, _ in answers]

    def _generate(self, requests: list[Instance], conditions: list[Condition]) -> dict[Condition, list[Answer]]:
        """Every request's (text, audit) under each of ``conditions``, in request order."""
        collator = Collator(
            requests, sort_fn=lambda r: (-len(r.args[0]), r.args[3]), group_fn=lambda r: r.args[1], grouping=True
        )
        together = self._together
        answers: dict[Condition, list[Answer]] = {condition: [] for condition in conditions}
        names = "+".join(c.name for c in conditions) if len(conditions) < 4 else f"{len(conditions)} conditions"
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc=f"{self.model_name} generate ({names})")
        for batch in collator.get_batched(n=self.batch_size):
            contexts = [request.args[0] for request in batch]
            wheres, keys, visuals = zip(*(self._visuals(request) for request in batch))
            prompts = [self.format_prompt(text, len(images)) for text, images in zip(contexts, visuals)]
            inputs, layouts = self._encode(prompts, list(visuals), list(wheres), list(keys))
            options, until = self._generate_options(batch[0].args[1])
            groups = together.groups(conditions, len(batch)) if together is not None else [conditions]
            texts = {}
            for group in groups:
                texts.update(self._generate_split(inputs, layouts, group, options))
            for condition in conditions:
                for prompt, layout, text in zip(prompts, layouts, texts[condition]):
                    for stop in until:
                        text = text.split(stop)[0]
                    answers[condition].append((text, self._audit(prompt, layout, condition)))
            progress.update(len(batch))
        progress.close()
        return {condition: collator.get_original(rows) for condition, rows in answers.items()}

    def _generate_split(self, inputs, layouts, conditions: list[Condition], options) -> dict[Condition, list[str]]:
        """The decoded generations of one batch under ``conditions`` in one pass; a pass that runs out of
        GPU memory is redone in two halves, down to one condition (then the error says what to do)."""
        try:
            with torch.inference_mode():
                generated = generate_each(self.model, conditions, layouts, inputs, reference=self.reference, **options)
        except torch.OutOfMemoryError as error:
            if len(conditions) == 1:
                raise torch.OutOfMemoryError(
                    f"{self.model_name}: out of memory generating a batch of {len(layouts)} under {conditions[0].name}; "
                    f"lower --batch_size / model_args batch_size ({error})"
                ) from error
            torch.cuda.empty_cache()
            half = len(conditions) // 2
            logger.warning(f"{self.model_name}: out of memory with {len(conditions)} conditions side by side; splitting the pass")
            return {
                **self._generate_split(inputs, layouts, conditions[:half], options),
                **self._generate_split(inputs, layouts, conditions[half:], options),
            }
        texts = self.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        batch = len(layouts)
        return {condition: texts[i * batch : (i + 1) * batch] for i, condition in enumerate(conditions)}

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """(log P(continuation | image + prompt), is_greedy) under the condition, one request at a time.

        Each pair is wrapped in a GenerationResult: lmms-eval 0.7.3's evaluator turns any other non-str
        model output into its string (``unwrap_generation_output``), which breaks multiple-choice scoring.
        """
        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc=f"{self.model_name} loglikelihood"):
            context, continuation = request.args[:2]
            if len(request.args) < 6:
                raise NarrowgateInputError(
                    "a loglikelihood request without a document (e.g. acc_mutual_info's unconditional requests) has no image; "
                    "narrowgate conditions need one"
                )
            where, key, images = self._visuals(request)
            if callable(continuation):
                _, doc_id, task, split = request.args[2:6]
                continuation = continuation(self.task_dict[task][split][doc_id])
            prompt = self.format_prompt(context, len(images))
            context_inputs, _ = self._encode([prompt], [images], [where], [key])
            inputs, layouts = self._encode([prompt + continuation], [images], [where], [key])
            context_ids, full_ids = context_inputs["input_ids"][0], inputs["input_ids"][0]
            # Score from the first token that the continuation changed (a tokenizer may merge across the boundary).
            n_context = min(len(context_ids), len(full_ids))
            differs = (context_ids[:n_context] != full_ids[:n_context]).nonzero()
            start = int(differs[0]) if len(differs) else n_context
            if start >= len(full_ids):
                raise NarrowgateInputError(f"{where}: the continuation {continuation!r} adds no token to the prompt")
            with torch.inference_mode(), intervene(self.model, self.condition, layouts, reference=self.reference):
                logits = self.model(**inputs).logits[0]
            logprobs = torch.log_softmax(logits[start - 1 : -1].float(), dim=-1)
            targets = full_ids[start:]
            total = logprobs.gather(-1, targets[:, None]).sum().item()
            greedy = bool((logprobs.argmax(-1) == targets).all())
            attach(request, self._audit(prompt + continuation, layouts[0], self.condition))
            results.append(GenerationResult(text=(total, greedy)))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            f"{self.model_name}: multi-round generation is not supported by narrowgate models (a condition is defined "
            "for one image prompt and its answer); use single-round generate_until or loglikelihood tasks"
        )
