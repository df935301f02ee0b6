"""Edits of the gate's hidden state: randomisation, recording and activation patching (docs/protocol.md §6).

All three act on the *input* of chosen decoder layers at the gate position(s) of every image (Emu3:
both gate tokens), through forward pre-hooks that the Session owns; the positions are resolved once
per forward from the Layouts. A forward that does not contain the gates (a decoding step after the
prompt) is left alone: the gate's keys and values are already in the cache.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .conditions import Condition, canonical_layers, example_seed, resolve_layers
from .layouts import Layout, batch_layouts
from .session import Forward, PerDevice, bound


class _GatePart:
    """The gate positions of a batch of layouts, located in the current forward."""

    def __init__(self, layouts: Sequence[Layout], layers: Sequence[int], what: str, batch: int | None = None):
        self.what = what
        self.layers = frozenset(layers)
        self.counts = tuple(sum(len(span.gate) for span in layout.spans) for layout in layouts)
        self.rows = torch.tensor([layout.row for layout in layouts for span in layout.spans for _ in span.gate], dtype=torch.long)
        self.positions = torch.tensor([p for layout in layouts for span in layout.spans for p in span.gate], dtype=torch.long)
        self.batch = len(layouts) if batch is None else batch  # rows of the forward (more under intervene_each)
        # device -> (rows, columns) of the gates in this forward; None when the forward holds no gate
        self.located: PerDevice | None = None

    def begin(self, forward: Forward) -> None:
        if forward.batch != self.batch:
            raise ValueError(f"{self.what}: the model runs a batch of {forward.batch} rows but got {self.batch} layouts")
        columns = self.positions - forward.q_offset
        inside = (columns >= 0) & (columns < forward.q_length)
        self.located = None
        if bool(inside.all()) and len(columns):
            self.located = PerDevice(lambda device: (self.rows.to(device), columns.to(device)))
        elif bool(inside.any()):
            raise ValueError(
                f"{self.what}: this forward (positions {forward.q_offset}-{forward.q_offset + forward.q_length - 1}) "
                "contains only some of the gate positions; run the whole prompt in one forward"
            )

    def edit(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        if self.located is None:
            return hidden
        rows, columns = self.located(hidden.device)
        new = self.replacement(layer, hidden[rows, columns])
        if new is None:
            return hidden
        hidden = hidden.clone()
        hidden[rows, columns] = new.to(hidden.dtype)
        return hidden

    def replacement(self, layer: int, current: torch.Tensor) -> torch.Tensor | None:
        """The new (N, hidden) gate states for ``current`` ones, or None to leave them."""
        raise NotImplementedError


class GateRandomizer(_GatePart):
    """Replaces each gate state by a fixed random direction (seeded per example, image and gate token)
    scaled to the norm of the state it replaces, at every chosen layer."""

    def __init__(
        self, condition: Condition, layouts: Sequence[Layout], num_layers: int, hidden_size: int, batch: int | None = None
    ):
        super().__init__(layouts, condition.layer_indices(num_layers), "gate_randomized", batch)
        directions = []
        for layout in layouts:
            for index, span in enumerate(layout.spans):
                generator = torch.Generator().manual_seed(example_seed(condition.seed, layout, index, "gate_randomized"))
                directions.append(torch.randn(len(span.gate), hidden_size, generator=generator))
        stacked = torch.cat(directions) if directions else torch.zeros(0, hidden_size)
        unit = stacked / stacked.norm(dim=-1, keepdim=True)
        self.directions = PerDevice(unit.to)  # copied once to each device that has chosen layers

    def replacement(self, layer: int, current: torch.Tensor) -> torch.Tensor:
        norms = current.float().norm(dim=-1, keepdim=True)
        return self.directions(current.device) * norms


@dataclass
class GateRecording:
    """Gate states recorded at the input of decoder layers: ``states[layer][row]`` is a
    (gate positions of the row, hidden) tensor, the row's images and gate tokens in order."""

    layers: tuple[int, ...]
    rows: int
    states: dict[int, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def select(self, rows: Sequence[int]) -> GateRecording:
        """The recording of some rows, in the given order (to pair sources with targets)."""
        self._require_complete()
        return GateRecording(self.layers, len(rows), {l: tuple(s[r] for r in rows) for l, s in self.states.items()})

    def _require_complete(self) -> None:
        missing = [layer for layer in self.layers if layer not in self.states]
        if missing:
            raise ValueError(f"the recording has no gate states for layers {missing}; did the source forward run?")


class _Recorder(_GatePart):
    def __init__(self, recording: GateRecording, layouts: Sequence[Layout]):
        super().__init__(layouts, recording.layers, "record_gate")
        self.recording = recording

    def replacement(self, layer: int, current: torch.Tensor) -> None:
        self.recording.states[layer] = tuple(current.detach().clone().split(self.counts))


class _Patcher(_GatePart):
    def __init__(self, recording: GateRecording, layouts: Sequence[Layout], layers: Sequence[int]):
        super().__init__(layouts, layers, "patch_gate")
        recording._require_complete()
        if recording.rows != len(layouts):
            raise ValueError(
                f"patch_gate: the recording has {recording.rows} rows but the target has {len(layouts)}; "
                "use recording.select(rows) to pair them"
            )
        for layer in layers:
            if layer not in recording.states:
                raise ValueError(f"patch_gate: layer {layer} was not recorded (recorded: {list(recording.layers)})")
        source = tuple(len(state) for state in recording.states[recording.layers[0]]) if recording.layers else ()
        if source != self.counts:
            raise ValueError(
                f"patch_gate: the source rows have {list(source)} gate positions but the target rows "
                f"{list(self.counts)}; source and target need the same images per row"
            )
        self.source = {layer: PerDevice(torch.cat(recording.states[layer]).to) for layer in layers}

    def replacement(self, layer: int, current: torch.Tensor) -> torch.Tensor:
        return self.source[layer](current.device)


@contextmanager
def record_gate(model: torch.nn.Module, layouts: Sequence[Layout], layers=None) -> Iterator[GateRecording]:
    """Record the gate's hidden state at the input of ``layers`` (default: all) during the forwards
    inside the block; a later forward over the same prompt overwrites the recording.

        with record_gate(model, layouts) as source:
            model(**source_inputs)
    """
    layouts = batch_layouts(layouts)
    with bound(model) as session:
        recording = GateRecording(resolve_layers(canonical_layers(layers), session.num_layers), len(layouts))
        with attach_edit(session, _Recorder(recording, layouts)):
            yield recording


@contextmanager
def patch_gate(
    model: torch.nn.Module, recording: GateRecording, layouts: Sequence[Layout], layers=None
) -> Iterator[None]:
    """Replace the gate's input to each of ``layers`` (default: every recorded layer) by the recorded
    source state: the paper's activation patching when ``layers`` is a single layer l. Composes with
    ``intervene`` (e.g. gate_only plus the gate of another image).

        with patch_gate(model, source, target_layouts, layers=[l]):
            logits = model(**target_inputs).logits
    """
    layouts = batch_layouts(layouts)
    with bound(model) as session:
        chosen = recording.layers if layers is None else resolve_layers(canonical_layers(layers), session.num_layers)
        with attach_edit(session, _Patcher(recording, layouts, chosen)):
            yield


@contextmanager
def attach_edit(session, part: _GatePart) -> Iterator[None]:
    """Apply ``part`` to the session's forwards inside the block."""
    session.edits.append(part)
    try:
        yield
    finally:
        session.edits.remove(part)
