"""Model names for lmms-eval: ``<family>_<condition>`` for every family and condition, derived from
``interventions.FAMILIES`` (plus the generic ``auto`` family) and ``interventions.CONDITIONS``, so a
new family or condition registers itself.

A bare family name is not registered: ``llava``, ``llava_onevision`` and ``qwen2_vl`` are lmms-eval
built-ins, and an entry point overwrites a built-in of the same name, so a plugin must only add names
that collide with nothing (``tests/test_lmms_guest.py`` compares them with lmms-eval's own registry).
The baseline is ``<family>_baseline``. From Python, ``model_class(family)`` is the family's wrapper
whose condition ``condition=`` chooses (``model_wrappers.load_model``; the grid switches conditions on it).

lmms-eval loads ``manifests`` through the ``lmms_eval.models`` entry point while it imports its model
registry; an exception there silently drops every later entry point, so this module and the two
modules it reads the names from (``interventions.families``, ``interventions.conditions``) import
nothing heavy (no torch, no transformers).

Each name resolves to a class attribute of this module (``model_wrappers.registry.chameleon_gate_ablated``),
built on first access: a subclass of the family's wrapper with the condition fixed, so that a
``condition=`` model argument contradicting the name can be refused.
"""

from __future__ import annotations

from functools import cache
from typing import Any

# The generic family: any image-text-to-text checkpoint, its layout derived (model_wrappers.auto).
AUTO = "auto"

# The adapter that runs one of lmms-eval's own registered models under a condition (--model narrowgate).
ADAPTER = ("narrowgate", "model_wrappers.adapter.NarrowgateAdapter")


@cache
def family_names() -> tuple[str, ...]:
    """The declared families (``interventions.FAMILIES``, in its order), then ``auto``."""
    from interventions.families import FAMILIES

    return (*FAMILIES, AUTO)


@cache
def condition_names() -> tuple[str, ...]:
    """The names of ``interventions.CONDITIONS``, in its order."""
    from interventions.conditions import CONDITIONS

    return tuple(CONDITIONS)


@cache
def model_names() -> dict[str, tuple[str, str]]:
    """Every name registered with lmms-eval -> (family, condition)."""
    return {
        f"{family}_{condition}": (family, condition) for family in family_names() for condition in condition_names()
    }


def unknown_model_message(name: str) -> str:
    """The error for a name that is not registered, listing the valid ones."""
    hint = f"; the baseline is {name}_baseline" if name in family_names() else ""
    return (
        f"unknown narrowgate model {name!r}{hint}. Valid names are <family>_<condition> with a family of "
        f"{', '.join(family_names())} and a condition of {', '.join(condition_names())}, e.g. "
        f"chameleon_gate_ablated; all names: {', '.join(model_names())}"
    )


@cache
def model_class(name: str) -> type:
    """The class behind a registered name (``emu3_gate_only``), or a family's wrapper (``emu3``, Python only)."""
    if name in family_names():
        family, condition = name, None
    elif name in model_names():
        family, condition = model_names()[name]
    else:
        raise ValueError(unknown_model_message(name))
    if condition is not None:
        return type(name, (model_class(family),), {"registered_condition": condition, "__module__": __name__})
    if family == AUTO:
        from model_wrappers.auto import AutoModel

        return AutoModel
    from model_wrappers.base import NarrowgateModel

    return type(name, (NarrowgateModel,), {"family": family, "__module__": __name__})


def manifests() -> list:
    """The ``lmms_eval.models`` entry point: one simple-model manifest per name."""
    from lmms_eval.models.registry_v2 import ModelManifest

    adapter = ModelManifest(model_id=ADAPTER[0], simple_class_path=ADAPTER[1])
    return [ModelManifest(model_id=name, simple_class_path=f"{__name__}.{name}") for name in model_names()] + [adapter]


def __getattr__(name: str) -> Any:
    # lmms-eval resolves "model_wrappers.registry.<name>" with getattr on this module.
    if name in model_names() or name in family_names():
        return model_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
