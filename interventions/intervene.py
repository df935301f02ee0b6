"""``intervene``: bind a condition to a model for the forwards and generations inside a block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from .conditions import Condition, make_condition
from .gate import GateRandomizer, attach_edit
from .knockout import Knockouts
from .layouts import Layout, batch_layouts
from .session import bound


@contextmanager
def intervene(
    model: torch.nn.Module,
    condition: Condition | str,
    layouts: Sequence[Layout],
    *,
    reference: bool | None = None,
) -> Iterator[None]:
    """Run ``model`` under ``condition`` for the batch described by ``layouts`` (one per row).

    Holds for ``model(...)`` and ``model.generate(...)``, for the prompt and every generated token,
    with dynamic or static caches. The model's own attention implementation is honoured (``reference``
    None): a model loaded with ``attn_implementation="eager"`` runs the eager reference (post-softmax
    edits; attention probabilities available with ``output_attentions=True``), ``"sdpa"`` the fast
    path, anything else is an error. ``reference=True``/``False`` chooses explicitly.
    On exit the model is restored exactly (attention implementation, hooks). One condition at a time;
    ``patch_gate`` and ``record_gate`` compose with it.
    """
    if isinstance(condition, str):
        condition = make_condition(condition)
    layouts = batch_layouts(layouts)
    if condition.name != "baseline":
        empty = [layout.row for layout in layouts if not layout.spans]
        if empty:
            raise ValueError(f"condition {condition.name!r} needs an image in every row; rows {empty} have none")
    with bound(model) as session:
        reference = session.default_reference if reference is None else reference
        if session.knockout is not None:
            raise RuntimeError(
                f"a condition ({session.knockout.condition.name!r}) is already bound to this model; "
                "intervene() blocks cannot be nested"
            )
        session.knockout = Knockouts(condition, layouts, session.num_layers, reference)
        session.use_reference(reference)
        try:
            if condition.edits_gate:
                randomizer = GateRandomizer(condition, layouts, session.num_layers, session.config.hidden_size)
                with attach_edit(session, randomizer):
                    yield
            else:
                yield
        finally:
            session.knockout = None
            session.use_reference(session.default_reference)
