"""State bound to a model while an intervention is active.

``generate()`` rejects unknown kwargs and 4D masks, so per-call state cannot travel with the inputs.
Instead a Session is bound to the language model's config (the object the attention modules and the
mask function both receive): the mask function, called once per forward of the language model, tells
the session where the forward's queries and keys sit in the KV cache, every part builds its position
bookkeeping there once, and the attention function and the decoder-layer hooks only read it.
Unbinding restores the config's attention implementation and removes every hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

# Attention implementations registered by interventions.knockout: the fast SDPA path and the eager
# reference (post-softmax edits, attention probabilities available with output_attentions).
FAST = "narrowgate"
REFERENCE = "narrowgate_eager"

# What each attention implementation a user may load the model with runs under an intervention.
HONOURED = {"sdpa": FAST, "eager": REFERENCE}

_SESSIONS: dict[int, Session] = {}


@dataclass(frozen=True)
class Forward:
    """One forward of the language model: queries sit at KV positions q_offset + [0, q_length), keys at
    kv_offset + [0, kv_length) (with a static cache, kv_length is the cache size). ``device`` is where
    the mask function built the mask (the embeddings' device); layers may run elsewhere (``PerDevice``)."""

    batch: int
    q_offset: int
    q_length: int
    kv_offset: int
    kv_length: int
    device: torch.device


class PerDevice:
    """Tensors of one forward, built on first use on each device that asks and then reused.

    A model spread by ``device_map`` runs its decoder layers on several devices, and every tensor a
    layer uses must live on that layer's device; building them once per device and forward (not per
    layer or decoding step, not by copying at every call) keeps the bookkeeping off the hot path.
    """

    def __init__(self, build: Callable[[torch.device], Any]):
        self._build = build
        self.built: dict[torch.device, Any] = {}

    def __call__(self, device: torch.device) -> Any:
        if device not in self.built:
            self.built[device] = self._build(device)
        return self.built[device]


def language_model(model: torch.nn.Module) -> torch.nn.Module:
    """The text decoder of a (multimodal) transformers model: the module whose ``layers`` are the
    decoder layers and whose config the attention modules read."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not all(hasattr(layer, "self_attn") for layer in layers):
        raise ValueError(
            f"{type(model).__name__}: cannot find the language model's decoder layers "
            f"(get_decoder() returned {type(decoder).__name__} without a `layers` list of attention layers)"
        )
    return decoder


def engine_attention(implementation: str | None) -> str:
    """The engine path that honours a language model's configured attention implementation: ``sdpa``
    (transformers' default, also for None) runs the fast path, ``eager`` the post-softmax reference (the
    authors' method). Anything else (flash attention, flex) is an error rather than a silent switch."""
    implementation = implementation or "sdpa"
    if implementation not in HONOURED:
        raise ValueError(
            f"the language model runs attn_implementation={implementation!r}, which narrowgate cannot intervene on; "
            f"load it with attn_implementation='sdpa' (the exact fast path) or 'eager' (the post-softmax reference)"
        )
    return HONOURED[implementation]


def configured_attention(model: torch.nn.Module) -> str:
    """``engine_attention`` of ``model``'s language model as loaded (also while a session is bound)."""
    config = language_model(model).config
    session = _SESSIONS.get(id(config))
    return engine_attention(session.saved_implementation if session else config._attn_implementation_internal)


class Session:
    """Everything narrowgate has bound to one language model.

    The language model runs narrowgate's attention while bound: the fast path, or the eager reference
    when the model was loaded with eager attention (``default_reference``) or ``intervene`` asks.

    knockout: the attention part (at most one; set by ``intervene``), with ``begin(forward, mask)``,
        ``reference`` and the attention functions' state. edits: hidden-state parts (gate
        randomisation, patching, recording), each with ``layers``, ``begin(forward)``, ``reset()`` and
        ``edit(layer, hidden) -> hidden``, applied in the order they were bound.
    """

    def __init__(self, model: torch.nn.Module):
        decoder = language_model(model)
        self.config = decoder.config
        self.num_layers = len(decoder.layers)
        self.knockout = None
        self.edits: list = []
        self.forward: Forward | None = None
        self.users = 0
        self.saved_implementation = self.config._attn_implementation_internal
        # the path that honours the implementation the model was loaded with (eager: the reference)
        self.default_reference = engine_attention(self.saved_implementation) == REFERENCE
        self._mask = None
        self._hooks = [decoder.register_forward_pre_hook(self._reset, with_kwargs=True)]
        self._hooks += [
            layer.register_forward_pre_hook(partial(self._pre_layer, index), with_kwargs=True)
            for index, layer in enumerate(decoder.layers)
        ]
        self.use_reference(self.default_reference)
        _SESSIONS[id(self.config)] = self

    def use_reference(self, reference: bool) -> None:
        self.config._attn_implementation_internal = REFERENCE if reference else FAST

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self.config._attn_implementation_internal = self.saved_implementation
        del _SESSIONS[id(self.config)]

    def begin(self, forward: Forward, mask) -> None:
        """Called by the mask function, once per forward, before any layer runs."""
        self.forward, self._mask = forward, mask
        if self.knockout is not None:
            self.knockout.begin(forward, mask)
        for part in self.edits:
            part.begin(forward)

    def require_forward(self) -> Forward:
        if self.forward is None:
            raise RuntimeError(
                "narrowgate: the language model ran without its mask function (was a 4D attention mask passed?); "
                "interventions need the model to build its own mask from a 2D attention_mask"
            )
        return self.forward

    def _reset(self, module, args, kwargs) -> None:
        """Forget the previous forward's bookkeeping, unless the decoder receives the very mask that the
        mask function just built (generate() with a static cache builds it before calling the model)."""
        mask = kwargs.get("attention_mask")
        masks = mask.values() if isinstance(mask, dict) else (mask,)
        if self._mask is not None and any(m is self._mask for m in masks):
            return
        self.forward = self._mask = None
        if self.knockout is not None:
            self.knockout.reset()
        for part in self.edits:
            part.reset()

    def _pre_layer(self, index: int, module, args, kwargs):
        parts = [part for part in self.edits if index in part.layers]
        if not parts:
            return None
        self.require_forward()
        hidden = args[0] if args else kwargs["hidden_states"]
        for part in parts:
            hidden = part.edit(index, hidden)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}


def session_for(config) -> Session:
    """The session bound to ``config`` (called by the attention and mask functions)."""
    try:
        return _SESSIONS[id(config)]
    except KeyError:
        raise RuntimeError(
            f"the {FAST!r}/{REFERENCE!r} attention implementations only run inside interventions.intervene(), "
            "record_gate() or patch_gate()"
        ) from None


@contextmanager
def bound(model: torch.nn.Module) -> Iterator[Session]:
    """The model's session, created on first use and closed (model restored) when its last user exits."""
    config = language_model(model).config
    session = _SESSIONS.get(id(config)) or Session(model)
    session.users += 1
    try:
        yield session
    finally:
        session.users -= 1
        if session.users == 0:
            session.close()
