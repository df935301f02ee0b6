"""State bound to a model while an intervention is active.

``generate()`` rejects unknown kwargs and 4D masks, so per-call state cannot travel with the inputs.
Instead a Session is bound to the language model itself, and the caller holds it (``intervene`` yields
it; ``session_of(decoder)`` finds it from the model): the session sets itself on every
attention module of the decoder (``module.narrowgate_session``, which the registered attention functions
read) and switches the decoder to narrowgate's attention through transformers' public
``set_attn_implementation``. A forward pre-hook on the decoder reads where the forward's queries and
keys sit in the KV cache (from the cache it is given, as transformers' mask functions do), every part
builds its position bookkeeping there once, and the attention functions and the decoder-layer hooks only
read it. Unbinding restores the attention implementation, removes the hooks and the module attributes.
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

# The attribute of every attention module of a bound decoder that holds its Session.
ATTRIBUTE = "narrowgate_session"


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

    @classmethod
    def of(cls, args: tuple, kwargs: dict) -> Forward:
        """The positions of a decoder forward from its inputs and cache, computed as transformers' mask
        creation computes them (``cache.get_query_offset`` / ``get_mask_sizes`` of the first layer; without a
        cache: the 2D attention mask's length)."""
        inputs = kwargs.get("inputs_embeds")
        if inputs is None:
            inputs = kwargs.get("input_ids", args[0] if args else None)
        batch, q_length = inputs.shape[:2]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None:
            kv_length, kv_offset = cache.get_mask_sizes(q_length, 0)
            return cls(batch, int(cache.get_query_offset(0)), q_length, int(kv_offset), int(kv_length))
        mask = kwargs.get("attention_mask")
        kv_length = mask.shape[-1] if isinstance(mask, torch.Tensor) and mask.dim() == 2 else q_length
        return cls(batch, 0, q_length, 0, kv_length)


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
    decoder = language_model(model)
    session = session_of(decoder)
    return engine_attention(session.saved_implementation if session else decoder.config._attn_implementation)


class Session:
    """Everything narrowgate has bound to one language model.

    The language model runs narrowgate's attention while bound: the fast path, or the eager reference
    when the model was loaded with eager attention (``default_reference``) or ``intervene`` asks.

    knockout: the attention part (at most one; set by ``intervene``), with ``begin(forward)`` (before
        every forward), ``reference`` and the attention functions' state. edits: hidden-state parts (gate
        randomisation, patching, recording), each with ``layers``, ``begin(forward)`` and
        ``edit(layer, hidden) -> hidden``, applied in the order they were bound.
    """

    def __init__(self, model: torch.nn.Module):
        decoder = language_model(model)
        if not hasattr(decoder, "set_attn_implementation"):
            raise ValueError(f"{type(decoder).__name__}: the language model is not a transformers PreTrainedModel")
        self.decoder = decoder
        self.config = decoder.config
        self.num_layers = len(decoder.layers)
        self.knockout = None
        self.edits: list = []
        self.forward: Forward | None = None
        self.users = 0
        self.saved_implementation = self.config._attn_implementation
        # the path that honours the implementation the model was loaded with (eager: the reference)
        self.default_reference = engine_attention(self.saved_implementation) == REFERENCE
        self._attention = [layer.self_attn for layer in decoder.layers]
        for module in self._attention:
            setattr(module, ATTRIBUTE, self)
        self._hooks = [decoder.register_forward_pre_hook(self._begin, with_kwargs=True)]
        self._hooks += [
            layer.register_forward_pre_hook(partial(self._pre_layer, index), with_kwargs=True)
            for index, layer in enumerate(decoder.layers)
        ]
        self.use_reference(self.default_reference)

    def _implement(self, implementation: str) -> None:
        # the decoder alone ("": its own config), not the vision tower or a VQ model inside it
        self.decoder.set_attn_implementation({"": implementation})

    def use_reference(self, reference: bool) -> None:
        self._implement(REFERENCE if reference else FAST)

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        for module in self._attention:
            delattr(module, ATTRIBUTE)
        self._implement(self.saved_implementation)

    def require_forward(self) -> Forward:
        if self.forward is None:
            raise RuntimeError(
                "narrowgate: a decoder layer ran outside a forward of the bound language model; "
                "run the whole model (model(...) or model.generate(...)) inside the intervention"
            )
        return self.forward

    def _begin(self, module, args, kwargs) -> None:
        """Before every forward of the decoder: where its queries and keys sit; each part builds its
        bookkeeping for it (lazily, on the devices that ask)."""
        self.forward = forward = Forward.of(args, kwargs)
        if self.knockout is not None:
            self.knockout.begin(forward)
        for part in self.edits:
            part.begin(forward)

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


def session_of(module: torch.nn.Module) -> Session | None:
    """The session bound to a decoder or one of its attention modules (None when none is)."""
    if not hasattr(module, ATTRIBUTE) and isinstance(getattr(module, "layers", None), torch.nn.ModuleList):
        module = module.layers[0].self_attn
    return getattr(module, ATTRIBUTE, None)


def attention_session(module: torch.nn.Module) -> Session:
    """The session of an attention module that runs narrowgate's attention (the registered functions')."""
    session = getattr(module, ATTRIBUTE, None)
    if session is None:
        raise RuntimeError(
            f"the {FAST!r}/{REFERENCE!r} attention implementations only run inside interventions.intervene(), "
            "record_gate() or patch_gate()"
        )
    return session


@contextmanager
def bound(model: torch.nn.Module) -> Iterator[Session]:
    """The model's session, created on first use and closed (model restored) when its last user exits."""
    session = session_of(language_model(model)) or Session(model)
    session.users += 1
    try:
        yield session
    finally:
        session.users -= 1
        if session.users == 0:
            session.close()
