"""The one lmms-eval model class behind every family x condition.

``NarrowgateModel`` coordinates four collaborators, one module each: ``loading`` (the family's
transformers class and processor on the right device, data parallelism), ``encoding`` (each request's
images, the family's prompt, the processor call and the layouts of the images and their gates),
``generation`` (generation options, several conditions side by side, out-of-memory splitting) and
``loglikelihood``; every request gets an audit record (``audit``): the exact prompt given to the
processor, the condition with its layers and knockout semantics, the image/gate positions and the
attention edges that were cut. It is the ``"narrowgate"`` field of each sample in
``<date>_samples_<task>.jsonl``. What differs between families is declared: the image tokens in
``interventions.families``, the prompt in the family's own file here (``chameleon.py``, ...); the ``auto``
family derives both (``auto.py``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms

from interventions import Condition, FamilyIds, FamilySpec, family_spec, make_condition
from model_wrappers.audit import Auditor, attach, keep_audits_in_sample_files
from model_wrappers.encoding import Encoder, PromptFormat
from model_wrappers.generation import Generator
from model_wrappers.loading import Checkpoint, check_family, load_checkpoint, placement
from model_wrappers.loglikelihood import loglikelihoods
from model_wrappers.together import Together

MODEL_ARGS = (
    "pretrained, condition, layers, knockout, k, seed, cut, heads, device, dtype, device_map, attn_implementation, "
    "batch_size, trust_remote_code"
)


class NarrowgateModel(lmms):
    """lmms-eval simple model: one family's checkpoint under one intervention condition.

    ``family`` names the family (``interventions.FAMILIES``); the registry makes a subclass per family and
    a further one per ``<family>_<condition>`` name that fixes ``registered_condition``.
    """

    is_simple = True
    family: ClassVar[str]
    registered_condition: ClassVar[str | None] = None
    encoder_class: ClassVar[type[Encoder]] = Encoder
    prompt_format: ClassVar[PromptFormat] = PromptFormat()

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
            raise ValueError(f"{self.model_name}: unknown model_args {', '.join(sorted(unknown))}; valid: {MODEL_ARGS}")
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
        if self.spec.model_type:  # a declared family: the checkpoint must be one of its (the auto family derives)
            check_family(self.model_name, self.spec, self.pretrained, self.condition.name)
        try:
            rows = int(batch_size)
        except ValueError:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r} (auto is not supported)") from None
        if rows < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        where = placement(device, device_map)
        self._rank, self._world_size = where.rank, where.world_size
        self.checkpoint: Checkpoint = load_checkpoint(
            self.model_name,
            self.pretrained,
            self.spec.model_class,
            where,
            dtype=dtype,
            device_map=device_map,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        self.encoder = self.encoder_class(self.spec, self.checkpoint, self.prompt_format)
        self.num_layers = self.checkpoint.num_layers
        self.condition.layer_indices(self.num_layers)  # layer spec out of range: fail before evaluating
        self.condition.head_indices(self.checkpoint.model.config.get_text_config().num_attention_heads)
        self.auditor = Auditor(self.model_name, self.pretrained, self.num_layers, self.checkpoint.attention)
        self.generator = Generator(self.checkpoint, self.encoder, self.auditor, rows, self.rank == 0, self.running)
        self._together: Together | None = None  # conditions_together()
        keep_audits_in_sample_files()

    # --- names, devices, conditions -----------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.family if self.registered_condition is None else f"{self.family}_{self.registered_condition}"

    @property
    def model(self) -> torch.nn.Module:
        return self.checkpoint.model

    @property
    def processor(self) -> Any:
        return self.checkpoint.processor

    @property
    def tokenizer(self) -> Any:
        return self.checkpoint.tokenizer

    @property
    def family_ids(self) -> FamilyIds:
        """The family's token ids in this checkpoint's tokenizer."""
        return self.encoder.ids

    @property
    def device(self) -> torch.device:
        return self.checkpoint.device

    @property
    def batch_size(self) -> int:
        """Requests per generation batch (each generated once per condition computed together)."""
        return self.generator.batch_size

    @batch_size.setter
    def batch_size(self, rows: int) -> None:
        self.generator.batch_size = rows

    @property
    def reference(self) -> bool:
        """Whether the model runs narrowgate's eager post-softmax reference (loaded with attn_implementation=eager)."""
        return self.checkpoint.reference

    def running(self) -> str:
        """What runs now, for error messages about a request."""
        return f"condition {self.condition.name!r}, model {self.model_name}"

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
        # the same instance can be evaluated again under another condition. The run's tensors are freed
        # by reference counting; a full gc.collect() (it walks every object of the process: ~0.5-1.5 s
        # at every cell of a grid, most of a cell's overhead) only where a CUDA cache is emptied after it.
        if torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()

    def load_spec(self, trust_remote_code: bool) -> FamilySpec:
        """The image-token structure of the checkpoint: the family's declared one (the auto family derives it)."""
        return family_spec(self.family)

    def format_prompt(self, text: str, n_images: int) -> str:
        """The exact text given to the processor for the task's ``text`` and ``n_images`` images."""
        return self.encoder.format_prompt(text, n_images)

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
                together.store(missing, self.generator.generate(missing, together.lacking(missing), self.task_dict, together))
            answers = together.serve(self.condition, requests)
        else:
            answers = self.generator.generate(requests, [self.condition], self.task_dict)[self.condition]
        for request, (_, audit) in zip(requests, answers):
            attach(request, audit)
        return [text for text, _ in answers]

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """(log P(continuation | image + prompt), is_greedy) under the condition, one request at a time."""
        return loglikelihoods(
            requests, self.condition, self.checkpoint, self.encoder, self.auditor, self.task_dict, self.running(), self.rank == 0
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            f"{self.model_name}: multi-round generation is not supported by narrowgate models (a condition is defined "
            "for one image prompt and its answer); use single-round generate_until or loglikelihood tasks"
        )
