"""Attention knockout: cut (query, key) edges in chosen layers and heads, prompt and generated tokens.

A knockout's queries are a range of KV positions (``Knockout.first_query``/``stop_query``: from a
position on, a prompt span, the last token, generated tokens only); the fast path splits a forward's
query rows at every range's start and stop, so each block of rows runs one SDPA call with one set of cut
keys per batch row. A knockout in some heads only (``heads``) recomputes just those heads (``_Heads``).

Two attention implementations are registered with transformers (``AttentionInterface``), each with the
stock mask function under the same name (``AttentionMaskInterface``; without one transformers builds no
mask and left padding is lost). The functions find the Session bound to the attention module they are
called with (``session.attention_session``):

- ``narrowgate`` (fast, SDPA). ``zero``: a post-softmax probability set to 0 without renormalising is
  the same as removing the key's value vector, out_i = sum_{j not in K} A_ij v_j, so the affected query
  rows run SDPA on values with K's rows zeroed. Rows are split only where a knockout starts after some
  of its keys are visible (gate_only: the image reads itself, the text after the gate must not); a
  knockout whose queries start at or before its first key (Q = all) is applied to every row, which is
  exact because earlier rows cannot see K (causality) and keeps SDPA's causal kernel. A single query
  (a decoding step) zeroes its few probabilities directly rather than copying the value cache. Value
  widths never change (a [v, masked v] concatenation would push torch onto its slow math kernel) and no
  per-head masks are built. ``mask``: in a prefill without padding (SDPA's causal kernel), the cut keys
  are left out: causal attention over the kept keys and the queries at the kept positions is exactly
  causal attention with the cut edges at -inf (kept query i sees the kept keys before it), so the rows
  keep the causal kernel; the few queries at cut positions read the kept keys before them through a
  small mask. Elsewhere (padding, decoding steps, rows after a gate) a boolean mask restricted to the
  affected rows. A query whose every visible key is cut reads nothing (output 0, SDPA's rule for an
  all-False row).
- ``narrowgate_eager`` (reference): eager attention with the probabilities zeroed after the softmax
  (``zero``) or the scores set to -inf before it (``mask``); returns the probabilities, so it serves
  ``output_attentions`` and the tests.

The per-forward tensors (cut-key masks, chunk masks) are built lazily, from the mask the first attention
call of a forward receives, for the device of the layer that asks (``PerDevice``), once per device and
forward, so a model spread by ``device_map`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

from .conditions import Condition
from .layouts import Layout
from .session import FAST, REFERENCE, Forward, PerDevice, attention_session


@dataclass(frozen=True)
class _Rule:
    """One knockout of one row: queries at KV positions in [first_query, stop_query) may not read ``keys``
    (stop_query None: every later position)."""

    row: int
    first_query: int
    keys: torch.Tensor  # int64 KV positions
    first_key: int
    stop_query: int | None = None


@dataclass(frozen=True)
class _KeptKeys:
    """One batch row of a ``mask`` chunk of rows [0, stop) run on SDPA's causal kernel (no padding, and
    every batch row cuts a key there): the kept positions run plain causal attention among themselves,
    the cut ones only query, each reading the kept keys before it."""

    kept: torch.Tensor  # int64 positions of the keys not cut
    cut: torch.Tensor  # int64 positions of the cut keys (at least one)
    mask: torch.Tensor  # (1, 1, cut, kept) bool: kept key before the cut query

    @classmethod
    def of(cls, blocked: torch.Tensor) -> _KeptKeys:
        """From a (stop,) bool row of cut keys, at least one True."""
        kept, cut = (~blocked).nonzero().squeeze(1), blocked.nonzero().squeeze(1)
        return cls(kept, cut, (kept[None, :] < cut[:, None])[None, None])


@dataclass(frozen=True)
class _Chunk:
    """Query rows [start, stop) of one forward that share, per batch row, one set of cut keys.

    blocked: (B, 1, kv, 1) bool, True where a key is cut (None: the rows run as baseline or ``kept``).
    mask: the SDPA mask for these rows (None: SDPA's causal kernel).
    kept: per batch row, the kept/cut split of a ``mask`` chunk run on the causal kernel (else None).
    """

    start: int
    stop: int
    blocked: torch.Tensor | None
    mask: torch.Tensor | None
    kept: tuple[_KeptKeys, ...] | None = None


class Knockouts:
    """The attention part of a Session: a condition's knockouts for a batch of layouts."""

    def __init__(
        self,
        condition: Condition,
        layouts: Sequence[Layout],
        num_layers: int,
        num_heads: int,
        reference: bool,
        prompt_length: int | None = None,
    ):
        self.condition = condition
        self.layers = frozenset(condition.layer_indices(num_layers))
        self.mask_semantics = condition.knockout == "mask"
        self.reference = reference
        self.batch = len(layouts)
        # the positions the first forward must hold: the prompts', or a shared prefix's (``prompt_length``)
        self.prompt_length = max((layout.length for layout in layouts), default=0) if prompt_length is None else prompt_length
        self.rules = [
            _Rule(layout.row, ko.first_query, torch.tensor(ko.keys, dtype=torch.int64), min(ko.keys), ko.stop_query)
            for layout in layouts
            for ko in condition.knockouts(layout)
            if ko.first_changed is not None
        ]
        heads = condition.head_indices(num_heads)
        self.heads = None if heads is None or len(heads) == num_heads else _Heads(heads, num_heads)
        # device -> this forward's chunks (fast path) or dense (B, 1, q, kv) cut edges (reference)
        self.on: PerDevice | None = None
        self.forward: Forward | None = None

    @staticmethod
    def _start(rule: _Rule) -> int:
        """The first query row (KV position) from which the fast path applies ``rule``: every row when its
        queries start at or before its first key (earlier rows cannot see the keys: causality)."""
        return 0 if rule.first_query <= rule.first_key else rule.first_query

    def begin(self, forward: Forward) -> None:
        if forward.batch != self.batch:
            raise ValueError(
                f"the model runs a batch of {forward.batch} rows but the intervention has {self.batch} layouts; "
                "pass one layout per row (beam search and num_return_sequences > 1 are not supported)"
            )
        if forward.q_offset == 0 and forward.q_length < self.prompt_length:
            raise ValueError(
                f"the model's input has {forward.q_length} positions but the layouts describe prompts of "
                f"{self.prompt_length}; compute the layouts from the very input_ids the model receives"
            )
        self.forward = forward
        self.on = None

    def _built(self, device: torch.device, mask: torch.Tensor | None):
        """This forward's tensors on ``device``; the first call of the forward fixes the mask they use."""
        if self.on is None:
            self.on = PerDevice(partial(self._dense if self.reference else self._chunks, self.forward, mask))
        return self.on(device)

    @staticmethod
    def _local_keys(rule: _Rule, forward: Forward, device: torch.device) -> torch.Tensor:
        keys = rule.keys - forward.kv_offset
        return keys[(keys >= 0) & (keys < forward.kv_length)].to(device)

    def _dense(self, forward: Forward, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """(B, 1, q, kv) bool, True where the edge is cut: the reference's exact (Q, K) sets."""
        blocked = torch.zeros(forward.batch, 1, forward.q_length, forward.kv_length, dtype=torch.bool, device=device)
        for rule in self.rules:
            first = max(rule.first_query - forward.q_offset, 0)
            stop = forward.q_length if rule.stop_query is None else min(rule.stop_query - forward.q_offset, forward.q_length)
            if first < stop:
                blocked[rule.row, 0, first:stop].index_fill_(-1, self._local_keys(rule, forward, device), True)
        if self.heads is not None:  # the reference materialises (B, heads, q, kv) probabilities anyway
            blocked = blocked & self.heads.selected(device)[None, :, None, None]
        return blocked

    def _chunks(self, forward: Forward, mask: torch.Tensor | None, device: torch.device) -> tuple[_Chunk, ...]:
        mask = None if mask is None else mask.to(device)
        starts = [self._start(rule) - forward.q_offset for rule in self.rules]
        stops = [forward.q_length if r.stop_query is None else r.stop_query - forward.q_offset for r in self.rules]
        edges = (*starts, *stops)
        bounds = sorted({0, forward.q_length, *(e for e in edges if 0 < e < forward.q_length)})
        chunks = []
        for lo, hi in pairwise(bounds):
            active = [rule for rule, s, e in zip(self.rules, starts, stops) if s <= lo and hi <= e]
            if not active:
                chunks.append(_Chunk(lo, hi, None, self._rows_mask(forward, mask, lo, hi, False, device)))
                continue
            blocked = torch.zeros(forward.batch, forward.kv_length, dtype=torch.bool, device=device)
            for rule in active:
                blocked[rule.row].index_fill_(0, self._local_keys(rule, forward, device), True)
            cut = blocked[:, :hi]
            if self.mask_semantics and mask is None and lo == 0 and hi > 1 and bool(cut.any(dim=1).all()):
                chunks.append(_Chunk(lo, hi, None, None, tuple(_KeptKeys.of(row) for row in cut)))
            elif self.mask_semantics:
                rows_mask = self._rows_mask(forward, mask, lo, hi, True, device) & ~blocked[:, None, None, :]
                chunks.append(_Chunk(lo, hi, blocked[:, None, :, None], rows_mask))
            else:
                chunks.append(_Chunk(lo, hi, blocked[:, None, :, None], self._rows_mask(forward, mask, lo, hi, False, device)))
        return tuple(chunks)

    @staticmethod
    def _rows_mask(
        forward: Forward, mask: torch.Tensor | None, lo: int, hi: int, explicit: bool, device: torch.device
    ) -> torch.Tensor | None:
        """The stock SDPA mask restricted to query rows [lo, hi); None keeps SDPA's causal kernel, which
        is only right for rows that start at 0 (upper-left alignment) or a single decoding query."""
        if mask is not None:
            return mask if (lo, hi) == (0, forward.q_length) else mask[:, :, lo:hi]
        if not explicit and (forward.q_length == 1 or (lo == 0 and hi > 1)):
            return None
        queries = forward.q_offset + torch.arange(lo, hi, device=device)
        keys = forward.kv_offset + torch.arange(forward.kv_length, device=device)
        return (keys[None, :] <= queries[:, None])[None, None]

    def _check(self, query: torch.Tensor, key: torch.Tensor) -> None:
        forward = self.forward
        if forward is None:
            raise RuntimeError(
                "narrowgate: attention ran outside a forward of the bound language model; run the whole model "
                "(model(...) or model.generate(...)) inside the intervention"
            )
        if query.shape[2] != forward.q_length or key.shape[2] != forward.kv_length:
            raise RuntimeError(
                f"narrowgate: attention got {query.shape[2]} queries x {key.shape[2]} keys but this forward's mask was "
                f"built for {forward.q_length} x {forward.kv_length} (sliding-window layers are not supported)"
            )

    def fast_attention(self, module, query, key, value, attention_mask, **kwargs):
        if module.layer_idx not in self.layers or not self.rules:
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        self._check(query, key)
        chunks = self._built(query.device, attention_mask)
        if self.heads is not None:
            return self.heads.attention(self._cut_attention, chunks, module, query, key, value, attention_mask, **kwargs)
        return self._cut_attention(chunks, module, query, key, value, **kwargs)

    def _cut_attention(self, chunks, module, query, key, value, **kwargs):
        if len(chunks) == 1:
            return self._chunk_attention(chunks[0], module, query, key, value, **kwargs), None
        # each chunk's rows are written into one output as they come (no list of outputs and their concatenation)
        output = query.new_empty(query.shape[0], query.shape[2], query.shape[1], value.shape[-1])
        for chunk in chunks:
            rows = query[:, :, chunk.start:chunk.stop]
            output[:, chunk.start:chunk.stop] = self._chunk_attention(chunk, module, rows, key, value, **kwargs)
        return output, None

    def _chunk_attention(self, chunk: _Chunk, module, rows, key, value, **kwargs) -> torch.Tensor:
        """(B, rows, heads, dim) attention output of one chunk's query rows."""
        if chunk.kept is not None:
            return _kept_keys_attention(module, rows, key, value, chunk, **kwargs)
        if chunk.blocked is None or self.mask_semantics:
            return sdpa_attention_forward(module, rows, key, value, chunk.mask, **kwargs)[0]
        if rows.shape[2] == 1:
            return _one_query_zero(module, rows, key, value, chunk, **kwargs)
        values = value.masked_fill(chunk.blocked, 0)
        return sdpa_attention_forward(module, rows, key, values, chunk.mask, **kwargs)[0]

    def reference_attention(self, module, query, key, value, attention_mask, **kwargs):
        blocked = None
        if module.layer_idx in self.layers and self.rules:
            self._check(query, key)
            blocked = self._built(query.device, attention_mask)
        return eager_attention(module, query, key, value, attention_mask, blocked, self.mask_semantics, **kwargs)


class _Heads:
    """A knockout in some query heads only. Every head runs the layer's attention unchanged, then the
    chosen heads are recomputed with the cut: those heads with their key/value heads (under grouped-query
    attention, all the query heads of the key/value heads involved, so the grouping the module declares
    holds), the chosen ones written over the unchanged output. No per-head mask is built, value widths
    stay, and the same code path as for every head computes the cut ones."""

    def __init__(self, heads: Sequence[int], num_heads: int):
        self.heads, self.num_heads = tuple(heads), num_heads
        self.on = PerDevice(lambda device: {})  # per device: key/value group size -> index tensors

    def selected(self, device: torch.device) -> torch.Tensor:
        """(heads,) bool, True for the chosen query heads."""
        chosen = torch.zeros(self.num_heads, dtype=torch.bool)
        chosen[list(self.heads)] = True
        return chosen.to(device)

    def _indices(self, groups: int, device: torch.device):
        """(kv heads involved, their query heads, the chosen heads' places among those) on ``device``."""
        built = self.on(device)
        if groups not in built:
            kv = sorted({head // groups for head in self.heads})
            block = [k * groups + r for k in kv for r in range(groups)]
            places = [block.index(head) for head in self.heads]
            as_tensor = partial(torch.tensor, dtype=torch.int64, device=device)
            built[groups] = (as_tensor(kv), as_tensor(block), as_tensor(places), as_tensor(list(self.heads)))
        return built[groups]

    def attention(self, cut_attention, chunks, module, query, key, value, attention_mask, **kwargs):
        output = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)[0]
        kv, block, places, heads = self._indices(query.shape[1] // key.shape[1], query.device)
        cut = cut_attention(
            chunks, module, query.index_select(1, block), key.index_select(1, kv), value.index_select(1, kv), **kwargs
        )[0]
        output.index_copy_(2, heads, cut.index_select(2, places))
        return output, None


def eager_attention(
    module, query, key, value, attention_mask, blocked=None, mask_semantics=False, dropout=0.0, scaling=None, **kwargs
):
    """Eager attention; ``blocked`` (B, 1, q, kv), True where an edge is cut, is applied after the
    softmax (zero) or before it (``mask_semantics``). Returns the output and the probabilities."""
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    if blocked is not None and mask_semantics:
        scores = scores.masked_fill(blocked, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if blocked is not None and not mask_semantics:
        probs = probs.masked_fill(blocked, 0.0)
    elif blocked is not None:
        # A query whose every visible key is cut reads nothing, as SDPA does for an all-False row.
        hidden = blocked if attention_mask is None else blocked | (attention_mask[:, :, :, : key.shape[-2]] < 0)
        probs = probs.masked_fill(hidden.all(dim=-1, keepdim=True) & blocked.any(dim=-1, keepdim=True), 0.0)
    dropped = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return output, probs


def _one_query_zero(module, query, key, value, chunk: _Chunk, dropout=0.0, scaling=None, **kwargs) -> torch.Tensor:
    """``zero`` for a single query row (a decoding step): the probabilities of one row are cheap to
    form, so they are zeroed directly instead of copying the whole value cache at every layer and step.
    Key/value heads are shared by reshaping the query (no repeat_kv copies)."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scaling = dim**-0.5 if scaling is None else scaling
    scores = torch.matmul(grouped, key.transpose(2, 3)) * scaling
    if chunk.mask is not None:
        scores = scores.masked_fill(~chunk.mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = probs.masked_fill(chunk.blocked.transpose(2, 3), 0.0)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).reshape(batch, 1, heads, dim)


def _kept_keys_attention(module, query, key, value, chunk: _Chunk, **kwargs) -> torch.Tensor:
    """``mask`` for query rows [0, stop) of a prefill on SDPA's causal kernel (see ``_KeptKeys``): the
    kept queries run causal attention over the kept keys, the cut queries a (cut, kept) mask; row by row,
    as the rows' cut keys differ."""
    stop = chunk.stop
    query, key, value = query[:, :, :stop], key[:, :, :stop], value[:, :, :stop]
    output = query.new_empty(query.shape[0], stop, query.shape[1], value.shape[-1])
    for b, split in enumerate(chunk.kept):
        rows = slice(b, b + 1)
        keys, values = key[rows, :, split.kept], value[rows, :, split.kept]
        output[b, split.kept] = sdpa_attention_forward(module, query[rows, :, split.kept], keys, values, None, **kwargs)[0][0]
        output[b, split.cut] = sdpa_attention_forward(module, query[rows, :, split.cut], keys, values, split.mask, **kwargs)[0][0]
    return output


def _fast_attention(module, query, key, value, attention_mask, **kwargs):
    knockouts = attention_session(module).knockout
    if knockouts is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return knockouts.fast_attention(module, query, key, value, attention_mask, **kwargs)


def _reference_attention(module, query, key, value, attention_mask, **kwargs):
    knockouts = attention_session(module).knockout
    if knockouts is None:  # record_gate / patch_gate alone on a model loaded with eager attention
        return eager_attention(module, query, key, value, attention_mask, **kwargs)
    return knockouts.reference_attention(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(FAST, _fast_attention)
AttentionInterface.register(REFERENCE, _reference_attention)
AttentionMaskInterface.register(FAST, sdpa_mask)
AttentionMaskInterface.register(REFERENCE, eager_mask)
