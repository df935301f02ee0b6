"""Named experimental conditions: which attention edges to cut, or which hidden state to destroy.

A condition maps a row's Layout to knockouts, each "queries at positions in [first_query, stop_query)
may not read these keys" (docs/protocol.md §3; stop_query None: on through every generated token), or
marks that it replaces the gate's hidden state instead. Positions are those of the Layout, so generated
tokens (positions >= the prompt length) are queries of every knockout whose queries are "all" or
"after the gate". ``flow`` cuts any edges between token roles (``interventions.roles``); the
literature's flows are registered as presets. The mechanism that applies them lives in
``interventions.knockout`` and ``interventions.gate``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from .roles import canonical_cut, flow_cuts

if TYPE_CHECKING:  # annotations only: this module is read without torch (model_wrappers.registry)
    from .layouts import Layout

KNOCKOUTS = ("zero", "mask")
SEPARATOR = "+"  # between the items of a layer list: survives lmms-eval's comma-split --model_args
OPTIONS = ("layers", "knockout", "k", "seed", "cut", "heads")
KNOCKOUT_OPTIONS = ("layers", "knockout", "heads")  # what every knockout condition reads


@dataclass(frozen=True)
class Knockout:
    """Queries at positions in [first_query, stop_query) may not read the keys at ``keys`` (in the chosen
    layers and heads); ``stop_query`` None: every later position, generated tokens included."""

    first_query: int
    keys: tuple[int, ...]
    stop_query: int | None = None

    @property
    def first_changed(self) -> int | None:
        """The first query row this knockout changes: none before its first query nor before its first
        key (causality); None when it changes none (no key, or its queries stop before that)."""
        if not self.keys:
            return None
        row = max(self.first_query, min(self.keys))
        return row if self.stop_query is None or row < self.stop_query else None


@dataclass(frozen=True)
class Condition:
    """A named condition with its options; build it with ``make_condition``.

    layers: None (every layer) or a canonical spec ("16-31", "3+5+7", "0-3+8", "last:8"), resolved
        against the model by ``layer_indices``. knockout: "zero" (post-softmax probabilities set to 0, rows not
        renormalised, as the paper) or "mask" (-inf before the softmax, rows renormalise).
        k: image tokens per image for random_image_ablated. seed: base seed of per-example choices.
        cut: the edges of a ``flow`` ("image>last+gate>text"; ``interventions.roles``).
        heads: None (every head) or a spec like ``layers`` ("0+5", "0-3") of the query heads a knockout cuts
            in; the other heads of the chosen layers run unchanged.
    """

    name: str
    layers: str | None = None
    knockout: str = "zero"
    k: int = 10
    seed: int = 0
    cut: str | None = None
    heads: str | None = None

    @property
    def definition(self) -> ConditionDef:
        return CONDITIONS[self.name]

    @property
    def edits_gate(self) -> bool:
        return self.definition.edits_gate

    def knockouts(self, layout: Layout) -> tuple[Knockout, ...]:
        """The knockouts of one row (empty for conditions that cut no attention edge)."""
        return self.definition.knockouts(self, layout)

    def layer_indices(self, num_layers: int) -> tuple[int, ...]:
        """The decoder layers this condition acts on, for a model with ``num_layers`` layers."""
        return resolve_layers(self.layers, num_layers)

    def head_indices(self, num_heads: int) -> tuple[int, ...] | None:
        """The query heads this condition's knockouts cut in (None: every head)."""
        return None if self.heads is None else resolve_layers(self.heads, num_heads, "heads")

    def to_dict(self) -> dict:
        """The condition's name and the options it reads (JSON-able, for sample logs); ``heads`` only when
        it is not every head, so records made before the option existed stay as they were."""
        options = [opt for opt in self.definition.options if not (opt == "heads" and self.heads is None)]
        return {"name": self.name, **{opt: getattr(self, opt) for opt in options}}


@dataclass(frozen=True)
class ConditionDef:
    """A registered condition: its documentation, the options it reads and what it does."""

    name: str
    doc: str
    options: tuple[str, ...]
    knockouts: Callable[[Condition, Layout], tuple[Knockout, ...]]
    edits_gate: bool = False


CONDITIONS: dict[str, ConditionDef] = {}


def _register(options: tuple[str, ...] = KNOCKOUT_OPTIONS, edits_gate: bool = False):
    def add(fn: Callable[[Condition, Layout], tuple[Knockout, ...]]):
        CONDITIONS[fn.__name__] = ConditionDef(fn.__name__, " ".join(fn.__doc__.split()), options, fn, edits_gate)
        return fn

    return add


@_register(options=())
def baseline(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """Nothing is changed (the reference every other condition is compared with)."""
    return ()


@_register()
def gate_ablated(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """No query reads the gate key(s) (paper: [EOI]); Emu3 loses both end-of-frame and end-of-image."""
    return tuple(Knockout(0, span.gate) for span in layout.spans)


@_register()
def gate_only(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """Queries after the gate (prompt text and every generated token) read no start-of-image or image
    key; the gate stays open, so the image reaches the text only through it (paper: img->text)."""
    return tuple(Knockout(span.gate[-1] + 1, span.start + tuple(span.image)) for span in layout.spans)


@_register()
def image_ablated(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """As gate_only, and the gate is blocked too: nothing after the gate reads the image at all."""
    return tuple(Knockout(span.gate[-1] + 1, span.start + tuple(span.image) + span.gate) for span in layout.spans)


@_register()
def last_image_ablated(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """No query reads the token just before the gate (the paper's "last image" control)."""
    return tuple(Knockout(0, (span.gate[0] - 1,)) for span in layout.spans)


@_register(options=(*KNOCKOUT_OPTIONS, "k", "seed"))
def random_image_ablated(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """No query reads k random image tokens of each image (the paper's "random" control). The choice
    is seeded per example and image, so it does not depend on batch composition or padding; repeats
    use different seeds."""
    knockouts = []
    for index, span in enumerate(layout.spans):
        if condition.k > len(span.image):
            raise ValueError(
                f"random_image_ablated: k={condition.k} but image {index} of row {layout.row} has only "
                f"{len(span.image)} image tokens; choose a smaller k"
            )
        rng = random.Random(example_seed(condition.seed, layout, index, "random_image"))
        offsets = sorted(rng.sample(range(len(span.image)), condition.k))
        knockouts.append(Knockout(0, tuple(span.image.start + o for o in offsets)))
    return tuple(knockouts)


@_register(options=("layers", "seed"), edits_gate=True)
def gate_randomized(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """The gate's hidden state at the input of every chosen decoder layer is replaced by a random
    vector of the same norm (seeded per example): the gate's information is destroyed while every
    attention path stays open."""
    return ()


# The paper's conditions (registered above); flows and the literature's presets follow.
PAPER_CONDITIONS: tuple[str, ...] = tuple(CONDITIONS)


@_register(options=(*KNOCKOUT_OPTIONS, "cut"))
def flow(condition: Condition, layout: Layout) -> tuple[Knockout, ...]:
    """Queries in DST may not read keys in SRC, for every ``cut=SRC>DST`` edge (edges joined by '+'; roles:
    image, last_image, image_start, gate, question, last, generated, prefix, text, *)."""
    return knockouts_of_cut(condition.cut, layout)


def knockouts_of_cut(cut: str, layout: Layout) -> tuple[Knockout, ...]:
    """The knockouts of a flow's edges in one row: one per query range, with the keys cut there."""
    return tuple(Knockout(lo, keys, hi) for (lo, hi), keys in flow_cuts(cut, layout))


# The literature's flows, registered like the paper's conditions: (name, cut, source).
PRESETS = (
    ("image_to_question", "image>question",
     "Zhang et al., CVPR 2025, 'Cross-modal information flow in multimodal large language models': image -> question tokens"),
    ("image_to_last", "image>last", "Zhang et al., CVPR 2025: image -> the last prompt token"),
    ("question_to_last", "question>last", "Zhang et al., CVPR 2025: question -> the last prompt token"),
    ("image_to_generated", "image>generated",
     ("Kaduri et al., CVPR 2025, 'What's in the image? A deep-dive into the vision of vision language models': "
      "image -> generated text (the prompt still reads the image)")),
)


def _preset(cut: str) -> Callable[[Condition, Layout], tuple[Knockout, ...]]:
    return lambda condition, layout: knockouts_of_cut(cut, layout)


CONDITIONS.update(
    {name: ConditionDef(name, f"flow cut={cut} ({source}).", KNOCKOUT_OPTIONS, _preset(cut)) for name, cut, source in PRESETS}
)


def example_seed(seed: int, layout: Layout, span_index: int, purpose: str) -> int:
    """A seed for one image of one example: independent of its batch row and padding."""
    text = f"{purpose}:{seed}:{layout.key}:{span_index}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def make_condition(
    name: str, *, layers=None, knockout: str = "zero", k: int = 10, seed: int = 0, cut=None, heads=None, **more
) -> Condition:
    """Build a condition by name; unknown names or options raise ValueError listing the valid ones.

    Options a condition does not read (e.g. ``knockout`` for baseline) are reset to their defaults,
    so equal experiments compare equal.
    """
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}; valid conditions: {', '.join(CONDITIONS)}")
    if more:
        raise ValueError(f"unknown option(s) {', '.join(sorted(more))} for condition {name!r}; valid options: {', '.join(OPTIONS)}")
    if knockout not in KNOCKOUTS:
        raise ValueError(f"unknown knockout {knockout!r}; valid: {', '.join(KNOCKOUTS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    reads = CONDITIONS[name].options
    if "cut" in reads and cut is None:
        raise ValueError(f"condition {name!r} needs cut=SRC>DST edges joined by '+', e.g. cut=image>last+gate>text")
    if cut is not None and "cut" not in reads:
        raise ValueError(f"condition {name!r} takes no cut (only flow does); use make_condition('flow', cut={cut!r})")
    given = {
        "layers": canonical_layers(layers),
        "knockout": knockout,
        "k": k,
        "seed": seed,
        "cut": None if cut is None else canonical_cut(cut),
        "heads": canonical_layers(heads, "heads"),
    }
    defaults = {f.name: f.default for f in fields(Condition) if f.name != "name"}
    return Condition(name=name, **{opt: given[opt] if opt in reads else defaults[opt] for opt in defaults})


def canonical_layers(layers, what: str = "layers") -> str | None:
    """Normalise a layer (or head) spec: None/"all", "16-31", "3+5+7", "0-3+8", [3, 5], 5 or "last:8" (the
    last 8 layers). Items are joined by ``+`` because lmms-eval splits ``--model_args`` on commas; commas
    are still accepted (Python, YAML), and the canonical form always uses ``+`` so that a recorded
    ``layers=...`` model argument replays as it is."""
    if layers is None or layers == "all":
        return None
    if isinstance(layers, bool):
        raise ValueError(f"invalid {what} {layers!r}")
    if isinstance(layers, int):
        layers = [layers]
    if isinstance(layers, (list, tuple)):
        if not layers or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in layers):
            raise ValueError(f"{what} must be a non-empty list of non-negative integers, got {layers!r}")
        return _format(layers)
    if isinstance(layers, str):
        spec = layers.replace(" ", "").replace(",", SEPARATOR)
        try:
            indices = _parse(spec, None)
        except ValueError as error:
            raise ValueError(f"invalid {what} {layers!r}: {error}") from None
        return spec if spec.startswith("last:") else _format(indices)
    raise ValueError(f"invalid {what} {layers!r}; use None, 'a-b', 'a+b+c', a list of ints or 'last:w'")


def resolve_layers(layers: str | None, num_layers: int, what: str = "layers") -> tuple[int, ...]:
    """The layer (or head) indices of a canonical spec for a model with ``num_layers`` of them."""
    if layers is None:
        return tuple(range(num_layers))
    indices = _parse(layers, num_layers)
    out_of_range = [i for i in indices if i >= num_layers]
    if out_of_range:
        raise ValueError(f"{what} {layers!r}: the model has {num_layers} {what} (0-{num_layers - 1}); got {out_of_range}")
    return indices


def _format(indices) -> str:
    """Sorted layer indices as ``+``-joined items, consecutive runs as ranges: [0, 1, 2, 3, 8] -> "0-3+8"."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return SEPARATOR.join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def _parse(spec: str, num_layers: int | None) -> tuple[int, ...]:
    """Parse a layer spec; ``num_layers`` None only checks the syntax."""
    if spec.startswith("last:"):
        width = spec[len("last:"):]
        if not width.isdigit():
            raise ValueError("'last:w' needs a non-negative integer w")
        if num_layers is None:
            return ()
        if int(width) > num_layers:
            raise ValueError(f"last:{width} but the model has only {num_layers} layers")
        return tuple(range(num_layers - int(width), num_layers))
    indices: list[int] = []
    for part in spec.split(SEPARATOR):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError("use 'a-b', 'a+b+c' (items joined by '+', e.g. '0-3+8') or 'last:w' with non-negative integers")
        if sep and int(hi) < int(lo):
            raise ValueError(f"empty range {part!r}")
        indices.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return tuple(sorted(set(indices)))

