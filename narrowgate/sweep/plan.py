"""What a sweep runs: one condition per window (layers, or one head of a layer range), as grid specs.

A window is pure bookkeeping: the layers (and heads) it cuts, a label that names its folder and its
row, and the x value of the plot (the window's first layer, or its head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from narrowgate.grid import ConditionSpec, ConfigError

BASELINE = "baseline"


@dataclass(frozen=True)
class Window:
    """One condition of a sweep: ``layers`` (a canonical layer spec) and, for a head sweep, one head."""

    size: int  # layers per window (a head sweep: the layers of its range)
    start: int  # first layer
    layers: str
    head: int | None = None

    @property
    def label(self) -> str:
        """The condition label: its folder in the grid and its row in the leaderboard."""
        layers = f"layers{self.layers.replace('+', '_')}"
        return layers if self.head is None else f"head{self.head}_{layers}"

    @property
    def position(self) -> int:
        """The plot's x value: the window's first layer, or the head."""
        return self.start if self.head is None else self.head

    def params(self) -> dict[str, Any]:
        """The options this window adds to the swept condition's."""
        return {"layers": self.layers} if self.head is None else {"layers": self.layers, "heads": str(self.head)}


def layer_windows(num_layers: int, sizes: Sequence[int], stride: int, span: Sequence[int] | None = None) -> list[Window]:
    """Sliding windows of each size over ``span`` (the model's layers by default), ``stride`` apart,
    each starting at the span's first layer and ending inside it."""
    layers = list(range(num_layers)) if span is None else list(span)
    if stride < 1:
        raise ConfigError(f"--stride must be a positive integer, got {stride}")
    windows = []
    for size in dict.fromkeys(sizes):  # a size given twice is swept once
        if not 1 <= size <= len(layers):
            raise ConfigError(f"--window {size}: the sweep covers {len(layers)} layers ({_spec(layers)}); use 1-{len(layers)}")
        for first in range(0, len(layers) - size + 1, stride):
            chosen = layers[first : first + size]
            windows.append(Window(size, chosen[0], _spec(chosen)))
    return windows


def head_windows(num_heads: int, span: Sequence[int]) -> list[Window]:
    """One window per attention head, each cutting that head in every layer of ``span``."""
    layers = _spec(span)
    return [Window(len(span), min(span), layers, head) for head in range(num_heads)]


def condition_specs(name: str, options: Mapping[str, Any], windows: Sequence[Window]) -> list[ConditionSpec]:
    """The baseline and ``name`` under each window, checked by the engine before any model loads. The
    options are recorded in the condition's canonical form (defaults spelled out), so that a rerun that
    spells a default out, or leaves it out, resumes the same cells."""
    taken = sorted({"layers", "heads"} & set(options))
    if taken:
        raise ConfigError(f"the sweep sets {' and '.join(taken)} per window; leave {', '.join(taken)} out of the condition's options")
    if name == BASELINE:
        raise ConfigError("the baseline changes nothing, so a sweep of it measures nothing; sweep a condition that cuts")
    try:
        canonical = ConditionSpec(name, name, dict(options)).make().to_dict()
        specs = [ConditionSpec(BASELINE, BASELINE, {})]
        for window in windows:
            params = {k: v for k, v in canonical.items() if k not in ("name", "layers", "heads")}
            specs.append(ConditionSpec(window.label, name, {**params, **window.params()}))
            specs[-1].make()
    except (ValueError, TypeError) as error:
        raise ConfigError(f"condition {name!r} with {dict(options)}: {error}") from None
    return specs


def _spec(layers: Sequence[int]) -> str:
    from interventions.conditions import canonical_layers

    return canonical_layers(list(layers))
