"""``intervene`` / ``intervene_each``: bind one condition, or one per block of rows, to a model for the
forwards and generations inside a block."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from .batched import ConditionBlocks, expand_inputs
from .conditions import Condition, make_condition
from .gate import GateRandomizer, attach_edit
from .knockout import Knockouts
from .layouts import Layout, batch_layouts
from .session import Session, bound


@contextmanager
def intervene(
    model: torch.nn.Module,
    condition: Condition | str,
    layouts: Sequence[Layout],
    *,
    reference: bool | None = None,
) -> Iterator[Session]:
    """Run ``model`` under ``condition`` for the batch described by ``layouts`` (one per row); yields the
    Session bound to the model (its ``knockout`` is what the attention modules run).

    Holds for ``model(...)`` and ``model.generate(...)``, for the prompt and every generated token,
    with dynamic or static caches. The model's own attention implementation is honoured (``reference``
    None): a model loaded with ``attn_implementation="eager"`` runs the eager reference (post-softmax
    edits; attention probabilities available with ``output_attentions=True``), ``"sdpa"`` the fast
    path, anything else is an error. ``reference=True``/``False`` chooses explicitly.
    On exit the model is restored exactly (attention implementation, hooks). One condition at a time
    (several side by side: ``intervene_each``); ``patch_gate`` and ``record_gate`` compose with it.
    """
    with bound(model) as session, intervene_each(model, [condition], layouts, reference=reference):
        yield session


@contextmanager
def intervene_each(
    model: torch.nn.Module,
    conditions: Sequence[Condition | str],
    layouts: Sequence[Layout],
    *,
    reference: bool | None = None,
) -> Iterator[Callable[[Mapping[str, Any]], dict[str, Any]]]:
    """Run the batch described by ``layouts`` once per condition, in one batch of
    ``len(conditions) * len(layouts)`` rows; yields ``expand(inputs)``, which lays the inputs out so:

        with intervene_each(model, ["baseline", "gate_ablated"], layouts) as expand:
            out = model.generate(**expand(inputs), max_new_tokens=20)
        # out[i * B:(i + 1) * B]: the B prompts under conditions[i]

    Each row gets what ``intervene(model, conditions[i], layouts)`` gives it: its block's attention runs
    the one-condition code path on the block's own slice of the batch. ``reference`` as for ``intervene``.
    Every row prefills the whole prompt; ``generate_each`` prefills the prefix the conditions share once.
    """
    conditions = [make_condition(c) if isinstance(c, str) else c for c in conditions]
    if not conditions:
        raise ValueError("intervene_each needs at least one condition")
    layouts = batch_layouts(layouts)
    batch = len(layouts)
    cutting = sorted({c.name for c in conditions if c.name != "baseline"})
    empty = [layout.row for layout in layouts if not layout.spans]
    if cutting and empty:
        raise ValueError(f"condition {', '.join(map(repr, cutting))} needs an image in every row; rows {empty} have none")
    with bound(model) as session, ExitStack() as stack:
        reference = session.default_reference if reference is None else reference
        if session.knockout is not None:
            raise RuntimeError(
                f"a condition ({session.knockout.condition.name!r}) is already bound to this model; "
                "intervene() blocks cannot be nested"
            )
        blocks = [Knockouts(c, layouts, session.num_layers, reference) for c in conditions]
        session.knockout = blocks[0] if len(blocks) == 1 else ConditionBlocks(blocks, batch)
        session.use_reference(reference)
        stack.callback(session.use_reference, session.default_reference)
        stack.callback(setattr, session, "knockout", None)
        for index, condition in enumerate(conditions):
            if condition.edits_gate:
                rows = [dataclasses.replace(layout, row=layout.row + index * batch) for layout in layouts]
                randomizer = GateRandomizer(
                    condition, rows, session.num_layers, session.config.hidden_size, batch=batch * len(conditions)
                )
                stack.enter_context(attach_edit(session, randomizer))
        yield lambda inputs: expand_inputs(inputs, len(conditions))
