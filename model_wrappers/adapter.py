"""``--model narrowgate``: one of lmms-eval's own registered models, run under a condition.

``lmms_eval --model narrowgate --model_args base=mistral3_vl,pretrained=...,condition=gate_ablated``
builds lmms-eval's ``mistral3_vl`` wrapper with the remaining model args and leaves its prompts,
batching and chat handling untouched. The adapter finds the transformers model inside the wrapper,
derives the image layout from its config and processor as the ``auto`` family does
(``interventions.generic``) and hooks the model: the first forward of each ``generate`` call (and
every forward outside ``generate``, as loglikelihood makes) computes the layouts from the very
``input_ids`` it receives and runs the rest of the call inside ``interventions.intervene``.

A wrapper it cannot see into (an API client, a model that is not a transformers ``PreTrainedModel``)
is refused by name. Errors raised inside the hooks are re-raised after the wrapper returns, even when
the wrapper catches them itself, so a condition that could not be applied never runs as baseline.
Per-example random choices (``random_image_ablated``, ``gate_randomized``) are seeded by the prompt's
token ids, since the wrapper does not tell which document a forward belongs to.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from lmms_eval.api.model import lmms

from interventions import Condition, find_layouts, intervene, make_condition
from model_wrappers.encoding import NarrowgateInputError
from model_wrappers.registry import ADAPTER, model_names

# Attributes of an lmms-eval wrapper that hold its transformers model or processor, looked at first.
MODEL_ATTRIBUTES = ("model", "_model")
PROCESSOR_ATTRIBUTES = ("processor", "_processor")


def _unwrap(module: Any) -> Any:
    """The model inside a DistributedDataParallel / FSDP wrapper (accelerate's prepare)."""
    while hasattr(module, "module") and isinstance(module.module, torch.nn.Module):
        module = module.module
    return module


def find_model(wrapper: Any, name: str):
    """The transformers model an lmms-eval wrapper generates with; an error names the wrapper when it holds none."""
    from transformers import PreTrainedModel

    candidates = [getattr(wrapper, attribute, None) for attribute in MODEL_ATTRIBUTES] + list(vars(wrapper).values())
    for candidate in candidates:
        candidate = _unwrap(candidate)
        if isinstance(candidate, PreTrainedModel):
            return candidate
    raise ValueError(
        f"lmms-eval model {name!r} ({type(wrapper).__module__}.{type(wrapper).__name__}) holds no transformers "
        f"PreTrainedModel narrowgate can see into (looked at .{', .'.join(MODEL_ATTRIBUTES)} and every attribute); "
        "only wrappers that run a transformers model in this process can run under a condition"
    )


def find_processor(wrapper: Any, model, trust_remote_code: bool):
    """The wrapper's transformers processor, or the checkpoint's own when the wrapper keeps none."""
    from transformers import AutoProcessor, ProcessorMixin

    for candidate in [getattr(wrapper, attribute, None) for attribute in PROCESSOR_ATTRIBUTES] + list(
        vars(wrapper).values()
    ):
        if isinstance(candidate, ProcessorMixin):
            return candidate
    return AutoProcessor.from_pretrained(model.config._name_or_path, trust_remote_code=trust_remote_code)


class ConditionHooks:
    """Runs every call of ``model`` under ``condition``: ``generate`` as one intervention whose layouts come
    from its first forward, any other forward as its own. Restores the model on ``remove``."""

    def __init__(self, model, condition: Condition, ids, name: str):
        self.model, self.condition, self.ids, self.name = model, condition, ids, name
        self.errors: list[Exception] = []
        self._stack: ExitStack | None = None
        self._in_generate = False
        self._generate = model.generate
        model.generate = self.generate  # instance attribute: the class and other models are untouched
        self._handles = [
            model.register_forward_pre_hook(self._begin, with_kwargs=True),
            model.register_forward_hook(self._end, always_call=True),
        ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        del self.model.generate

    def generate(self, *args, **kwargs):
        self._in_generate = True
        try:
            return self._generate(*args, **kwargs)
        finally:
            self._in_generate = False
            self._close()

    def _begin(self, module, args, kwargs) -> None:
        if self._stack is not None:  # a later forward of the same generate call
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        try:
            if input_ids is None:
                raise NarrowgateInputError(
                    f"{self.name}: the model was called without input_ids (inputs_embeds?); narrowgate finds the "
                    "images and their gates in input_ids"
                )
            try:
                layouts = find_layouts(input_ids, kwargs.get("attention_mask"), self.ids)
            except ValueError as error:
                raise NarrowgateInputError(
                    f"{self.name}: malformed image span in the model's input_ids: {error}"
                ) from error
            stack = ExitStack()
            stack.enter_context(intervene(self.model, self.condition, layouts))
        except Exception as error:
            self.errors.append(error)
            raise
        self._stack = stack

    def _end(self, module, args, output) -> None:
        if not self._in_generate:
            self._close()

    def _close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def raise_errors(self) -> None:
        """Re-raise the first error of the hooks (the wrapper may have caught it and answered something)."""
        if self.errors:
            error, self.errors = self.errors[0], []
            raise error


class NarrowgateAdapter(lmms):
    """lmms-eval simple model ``narrowgate``: ``base=<lmms-eval model name>`` under ``condition=``."""

    is_simple = True

    def __init__(
        self,
        base: str | None = None,
        condition: str = "baseline",
        layers: str | int | None = None,
        knockout: str = "zero",
        k: int = 10,
        seed: int = 0,
        image_token: str | None = None,
        start_token: str | None = None,
        gate_token: str | None = None,
        trust_remote_code: bool = False,
        **base_args: Any,
    ) -> None:
        super().__init__()
        from lmms_eval.models import get_model
        from PIL import Image

        from interventions.generic import check_probe, derive_spec

        if not base:
            raise ValueError("narrowgate: give the lmms-eval model to run as base=<name>, e.g. base=mistral3_vl")
        if base in model_names() or base == ADAPTER[0]:
            raise ValueError(
                f"narrowgate: base={base} is a narrowgate model already; use it directly with --model {base}"
            )
        self.condition = make_condition(condition, layers=layers, knockout=knockout, k=k, seed=seed)
        self.base_name = base
        self.base = get_model(base, force_simple=True)(**base_args)
        model = find_model(self.base, base)
        processor = find_processor(self.base, model, trust_remote_code)
        declared = {"image_token": image_token, "start_token": start_token, "gate_token": gate_token}
        try:
            spec = derive_spec(model.config.model_type, model.config, processor, **declared)
            spec = check_probe(spec, processor, Image.new("RGB", (224, 224), (128, 128, 128)))
        except ValueError as error:
            raise ValueError(f"narrowgate (base={base}): {error}") from error
        num_layers = model.config.get_text_config().num_hidden_layers
        self.condition.layer_indices(num_layers)  # layer spec out of range: fail before evaluating
        self.hooks = ConditionHooks(
            model, self.condition, spec.token_ids(processor.tokenizer), f"narrowgate (base={base})"
        )
        self.task_dict = self.base.task_dict  # the evaluator fills the adapter's; the wrapper reads its own
        self._rank, self._world_size = self.base.rank, self.base.world_size

    @property
    def model_name(self) -> str:
        """The lmms-eval name it runs under (``--model narrowgate``)."""
        return ADAPTER[0]

    @property
    def model(self):
        return self.hooks.model

    def set_condition(self, condition: Condition) -> None:
        """Run later requests under ``condition`` on the same weights."""
        condition.layer_indices(self.model.config.get_text_config().num_hidden_layers)
        self.condition = self.hooks.condition = condition

    def _call(self, method: str, requests):
        try:
            results = getattr(self.base, method)(requests)
        except Exception:
            self.hooks.raise_errors()  # the cause, when the wrapper failed on a hook's error
            raise
        self.hooks.raise_errors()
        return results

    def generate_until(self, requests):
        return self._call("generate_until", requests)

    def loglikelihood(self, requests):
        return self._call("loglikelihood", requests)

    def generate_until_multi_round(self, requests):
        return self._call("generate_until_multi_round", requests)
