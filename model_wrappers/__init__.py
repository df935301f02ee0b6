"""lmms-eval models for every family x every condition (``chameleon_baseline``, ``chameleon_gate_ablated``, ...).

This package is imported by lmms-eval's model registry at start-up (entry point
``lmms_eval.models``), so importing it must stay cheap and must not fail: everything heavy (torch,
transformers, the wrappers) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_wrappers.base import NarrowgateModel


def load_model(family: str, pretrained: str, **model_args: Any) -> NarrowgateModel:
    """Load ``pretrained`` as a ``family`` model once; switch conditions later with ``set_condition``.

    ``model_args`` are the ``--model_args`` options (``condition=``, ``layers=``, ``device=``, ...).
    """
    from model_wrappers.registry import model_class

    return model_class(family)(pretrained=pretrained, **model_args)


def __getattr__(name: str) -> Any:
    if name == "NarrowgateModel":
        from model_wrappers.base import NarrowgateModel

        return NarrowgateModel
    raise AttributeError(f"module 'model_wrappers' has no attribute {name!r}")


__all__ = ["NarrowgateModel", "load_model"]
