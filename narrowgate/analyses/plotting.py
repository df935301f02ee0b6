"""What every analysis figure shares: a title that says what was measured on which model under which
condition and how many examples; integer layer ticks; legends outside the axes, so they hide no line."""

from __future__ import annotations

from pathlib import Path


def model_name(pretrained: str) -> str:
    """A checkpoint's short name: its folder or hub name (``facebook/chameleon-7b`` -> ``chameleon-7b``)."""
    return Path(pretrained.rstrip("/")).name


def title(what: str, subject, condition, size: str) -> str:
    """``what: model, condition, size`` (the condition with its layers and knockout when not baseline;
    ``size`` says how many examples, e.g. ``n=96``)."""
    said = "baseline"
    if condition is not None:
        said = condition.name + (f" layers {condition.layers}" if condition.layers else "") + f" ({condition.knockout})"
    return f"{what}: {subject.name}, {said}, {size}"


def layer_axis(ax, num_layers: int, label: str = "layer") -> None:
    """Integer ticks over the model's layers (0 ... num_layers - 1)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, num_layers - 0.5)
    ax.set_xlabel(label)


def legend_outside(ax) -> None:
    """The legend to the right of the axes."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)


def stairs(ax, layers, values, **style):
    """One flat step per layer (values are per layer, not a curve between them)."""
    import numpy as np

    layers = np.asarray(layers, dtype=float)
    style.setdefault("baseline", None)  # a line, not a filled area, unless a baseline is given
    return ax.stairs(np.asarray(values, dtype=float), np.append(layers - 0.5, layers[-1] + 0.5), **style)
