"""Config-file schema helpers shared by the grid and study files (pydantic).

Values are taken as YAML gives them (no coercion: ``k: "3"`` is an error, not 3), and a validation
error becomes one message naming the file, the key (``models[0].tiny.seed``) and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

# names and labels become folder names
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def kind(value: Any) -> str:
    """How a bad value is named in a message: ``nothing``, ``str 'x'``, ``list [1]``."""
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def is_int(value: Any) -> bool:
    """An integer as YAML gives it (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check(test: Callable[[Any], Any], message: str) -> AfterValidator:
    """A validator: ``value`` if ``test(value)``, else ValueError(message.format(value=..., kind=...))."""

    def validate(value: Any) -> Any:
        if not test(value):
            raise ValueError(message.format(value=value, kind=kind(value)))
        return value

    return AfterValidator(validate)


SafeName = Annotated[
    Any,
    check(
        lambda v: isinstance(v, str) and SAFE_NAME.fullmatch(v),
        "expected letters, digits, '.', '_', '+', '-' (a folder name), got {value!r}",
    ),
]
Text = Annotated[Any, check(lambda v: isinstance(v, str), "expected text, got {kind}")]
Int = Annotated[Any, check(is_int, "expected an integer, got {value!r}")]
Positive = Annotated[Any, check(lambda v: is_int(v) and v >= 1, "expected a positive integer, got {value!r}")]
Names = Annotated[
    Any,
    check(
        lambda v: isinstance(v, list) and v and all(isinstance(x, str) and x for x in v),
        "expected a non-empty list of names, got {value!r}",
    ),
    check(lambda v: len(set(v)) == len(v), "names must be distinct, got {value!r}"),
]


class Entry(BaseModel):
    """A mapping of a config file: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_file(model: type[ModelT], data: Any, path: Path, explain: Callable[[dict[str, Any]], str]) -> ModelT:
    """``data`` as a config file ``model`` (grid, study); a ValueError names the file, the first bad key
    (``explain``) and what it expected."""
    if not isinstance(data, dict):
        keys = ", ".join(model.model_fields)
        raise ValueError(f"{path}: the config must be a mapping with keys {keys}; got {kind(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"{path}: {explain(error.errors()[0])}") from None


def explain(error: dict[str, Any], valid_keys: Callable[[list[Any]], Iterable[str]]) -> str:
    """One pydantic error as ``key: message``; for an unknown key the message lists ``valid_keys(loc)``,
    the keys of the mapping that holds it (``loc``: the path to the unknown key)."""
    loc = [part for part in error["loc"] if part != "[key]"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        message = f"unknown key; valid keys here: {', '.join(valid_keys(loc))}"
    elif error["type"] == "missing":
        message = "missing (required)"
    elif error["type"] == "value_error":
        message = str(error["ctx"]["error"])
    elif error["type"] in ("model_type", "dict_type"):
        message = f"expected a mapping, got {kind(error['input'])}"
    else:
        message = error["msg"]
    return f"{key}: {message}"
