"""Model names for lmms-eval: ``<family>_<condition>`` for every family and condition.

A bare family name is not registered: ``llava``, ``llava_onevision`` and ``qwen2_vl`` are lmms-eval
built-ins, and an entry point overwrites a built-in of the same name, so a plugin must only add names
that collide with nothing (``tests/test_lmms_guest.py`` compares them with lmms-eval's own registry).
The baseline is ``<family>_baseline``. From Python, ``model_class(family)`` is the family's wrapper
whose condition ``condition=`` chooses (``model_wrappers.load_model``; the grid switches conditions on it).

lmms-eval loads ``manifests`` through the ``lmms_eval.models`` entry point while it imports its model
registry; an exception there silently drops every later entry point, so this module imports nothing
heavy at import time (no torch, no interventions). The names it needs are therefore listed here;
``tests/test_wrappers.py`` checks them against ``interventions.FAMILIES`` and ``interventions.CONDITIONS``.

Each name resolves to a class attribute of this module (``model_wrappers.registry.chameleon_gate_ablated``),
built on first access: a subclass of the family's wrapper with the condition fixed, so that a
``condition=`` model argument contradicting the name can be refused.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

# family -> "module:Class" of its wrapper (one small file per family).
FAMILY_WRAPPERS: dict[str, str] = {
    "chameleon": "model_wrappers.chameleon:ChameleonModel",
    "emu3": "model_wrappers.emu3:Emu3Model",
    "llava": "model_wrappers.llava:LlavaModel",
    "llava_onevision": "model_wrappers.llava_onevision:LlavaOnevisionModel",
    "pixtral": "model_wrappers.pixtral:PixtralModel",
    "janus": "model_wrappers.janus:JanusModel",
    "qwen2_vl": "model_wrappers.qwen2_vl:Qwen2VLModel",
    "auto": "model_wrappers.auto:AutoModel",  # any image-text-to-text checkpoint, layout derived
}

# The adapter that runs one of lmms-eval's own registered models under a condition (--model narrowgate).
ADAPTER = ("narrowgate", "model_wrappers.adapter.NarrowgateAdapter")

# The names of interventions.CONDITIONS, in its order.
CONDITION_NAMES: tuple[str, ...] = (
    "baseline",
    "gate_ablated",
    "gate_only",
    "image_ablated",
    "last_image_ablated",
    "random_image_ablated",
    "gate_randomized",
)


def model_names() -> dict[str, tuple[str, str]]:
    """Every name registered with lmms-eval -> (family, condition)."""
    return {
        f"{family}_{condition}": (family, condition) for family in FAMILY_WRAPPERS for condition in CONDITION_NAMES
    }


def unknown_model_message(name: str) -> str:
    """The error for a name that is not registered, listing the valid ones."""
    hint = f"; the baseline is {name}_baseline" if name in FAMILY_WRAPPERS else ""
    return (
        f"unknown narrowgate model {name!r}{hint}. Valid names are <family>_<condition> with a family of "
        f"{', '.join(FAMILY_WRAPPERS)} and a condition of {', '.join(CONDITION_NAMES)}, e.g. "
        f"chameleon_gate_ablated; all names: {', '.join(model_names())}"
    )


@cache
def model_class(name: str) -> type:
    """The class behind a registered name (``emu3_gate_only``), or a family's wrapper (``emu3``, Python only)."""
    if name in FAMILY_WRAPPERS:
        family, condition = name, None
    elif name in model_names():
        family, condition = model_names()[name]
    else:
        raise ValueError(unknown_model_message(name))
    module_name, class_name = FAMILY_WRAPPERS[family].split(":")
    family_class = getattr(importlib.import_module(module_name), class_name)
    if condition is None:
        return family_class
    return type(name, (family_class,), {"registered_condition": condition, "__module__": __name__})


def manifests() -> list:
    """The ``lmms_eval.models`` entry point: one simple-model manifest per name."""
    from lmms_eval.models.registry_v2 import ModelManifest

    adapter = ModelManifest(model_id=ADAPTER[0], simple_class_path=ADAPTER[1])
    return [ModelManifest(model_id=name, simple_class_path=f"{__name__}.{name}") for name in model_names()] + [adapter]


def __getattr__(name: str) -> Any:
    # lmms-eval resolves "model_wrappers.registry.<name>" with getattr on this module.
    if name in model_names():
        return model_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
