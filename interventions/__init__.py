"""Interventions on the image-to-text path of vision-language models (no lmms-eval import here).

families: which tokens form an image and its gate. layouts: where they sit in a batch. roles: which
positions of a row play which part (image, gate, question, last, generated, ...), the vocabulary of
flows. conditions: named, documented experiments (flows among them). knockout + intervene: the
attention-edge mechanism bound to a model. prefix: several conditions generated side by side with their
shared prefix prefilled once.
gate: randomisation, recording and patching of the gate's hidden state.

The names below are imported on first use, so that ``interventions.families`` and
``interventions.conditions`` can be read without torch (lmms-eval's model registry lists the
``<family>_<condition>`` names from them at start-up).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time __getattr__ imports them on first use
    from .conditions import CONDITIONS, Condition, Knockout, make_condition  # noqa: F401
    from .families import FAMILIES, FamilyIds, FamilySpec, family_spec  # noqa: F401
    from .gate import GateRecording, patch_gate, record_gate  # noqa: F401
    from .intervene import intervene, intervene_each  # noqa: F401
    from .layouts import ImageSpan, Layout, find_layouts  # noqa: F401
    from .prefix import generate_each  # noqa: F401
    from .roles import ROLES, role_ranges  # noqa: F401

# public name -> the module that defines it
EXPORTS = {
    **dict.fromkeys(("CONDITIONS", "Condition", "Knockout", "make_condition"), "conditions"),
    **dict.fromkeys(("FAMILIES", "FamilyIds", "FamilySpec", "family_spec"), "families"),
    **dict.fromkeys(("GateRecording", "patch_gate", "record_gate"), "gate"),
    **dict.fromkeys(("intervene", "intervene_each"), "intervene"),
    **dict.fromkeys(("ImageSpan", "Layout", "find_layouts"), "layouts"),
    "generate_each": "prefix",
    **dict.fromkeys(("ROLES", "role_ranges"), "roles"),
}


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)


class _Package(types.ModuleType):
    """Keeps ``interventions.intervene`` the function: importing the submodule of the same name binds the
    module to the package's attribute, which an eager ``from .intervene import intervene`` used to undo."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in EXPORTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = list(EXPORTS)
