"""The grid config file's schema (pydantic): its keys, their types and the checks within one entry.

Values are taken as YAML gives them (no coercion: ``k: "3"`` is an error, not 3). A validation error
becomes one ConfigError naming the file, the key (``models[0].tiny.seed``) and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

# keyword arguments of interventions.make_condition that a config may set
CONDITION_PARAMS = ("layers", "knockout", "k", "seed")
# names and labels become folder names
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(test, message: str):
    """A validator: ``value`` if ``test(value)``, else ValueError(message.format(value=...))."""

    def validate(value: Any) -> Any:
        if not test(value):
            raise ValueError(message.format(value=value, kind=kind(value)))
        return value

    return AfterValidator(validate)


SafeName = Annotated[
    Any,
    _check(
        lambda v: isinstance(v, str) and SAFE_NAME.fullmatch(v),
        "expected letters, digits, '.', '_', '+', '-' (a folder name), got {value!r}",
    ),
]
Text = Annotated[Any, _check(lambda v: isinstance(v, str), "expected text, got {kind}")]
Int = Annotated[Any, _check(_is_int, "expected an integer, got {value!r}")]
Positive = Annotated[Any, _check(lambda v: _is_int(v) and v >= 1, "expected a positive integer, got {value!r}")]
Names = Annotated[
    Any,
    _check(
        lambda v: isinstance(v, list) and v and all(isinstance(x, str) and x for x in v),
        "expected a non-empty list of names, got {value!r}",
    ),
    _check(lambda v: len(set(v)) == len(v), "names must be distinct, got {value!r}"),
]
ArgName = Annotated[
    Any,
    _check(lambda v: isinstance(v, str), "argument names must be text, got {value!r}"),
    _check(
        lambda v: v not in ("family", "pretrained", "condition", *CONDITION_PARAMS),
        "is set by the grid (from the model entry and from each condition)",
    ),
]
ArgValue = Annotated[
    Any,
    _check(
        lambda v: v is None or isinstance(v, (str, int, float, bool)),
        "expected a single value (text, number, true/false), got {kind}",
    ),
]


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of keyword arguments for model_wrappers.load_model, got {kind(value)}")
    return value


ModelArgs = Annotated[dict[ArgName, ArgValue], BeforeValidator(_mapping)]


def _non_empty_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list, got {kind(value)}")
    return value


def _known_family(value: Any) -> Any:
    from model_wrappers.registry import FAMILY_WRAPPERS

    if value not in FAMILY_WRAPPERS:
        raise ValueError(f"unknown family {value!r}; known families: {', '.join(FAMILY_WRAPPERS)}")
    return value


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TinyEntry(Entry):
    seed: Int = 0


def _tiny(value: Any) -> Any:
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected `true` or a mapping like {{seed: 0}}, got {value!r}")
    return value


class ModelEntry(Entry):
    name: SafeName
    family: Annotated[Any, AfterValidator(_known_family)]
    pretrained: Annotated[
        Any, _check(lambda v: isinstance(v, str) and v, "expected a hub id or a path, got {kind}")
    ] = None
    tiny: Annotated[TinyEntry, BeforeValidator(_tiny)] | None = None
    model_args: ModelArgs = {}
    tasks: Names | None = None  # a subset of the grid's tasks for this model (default: all of them)

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if ("pretrained" in self.model_fields_set) == ("tiny" in self.model_fields_set):
            raise ValueError(
                "give exactly one of `pretrained:` (hub id or path) and `tiny:` (a tiny random checkpoint)"
            )
        return self

    @field_validator("tiny")
    @classmethod
    def _tiny_family(cls, value: TinyEntry | None, info: ValidationInfo) -> TinyEntry | None:
        if value is not None and info.data.get("family") == "auto":
            raise ValueError(
                "the auto family has one tiny checkpoint per architecture: write one with "
                "`narrowgate tiny ARCHITECTURE DIR` (see --list) and give `pretrained: DIR`"
            )
        return value


class ConditionEntry(Entry):
    name: Annotated[Any, _check(lambda v: isinstance(v, str), "expected a condition name, got {kind}")]
    label: SafeName = None
    layers: Any = None  # layers and knockout are checked by interventions.make_condition
    knockout: Any = None
    k: Positive = None
    seed: Int = None
    seeds: Annotated[
        Any,
        _check(
            lambda v: isinstance(v, list) and v and all(map(_is_int, v)),
            "expected a non-empty list of integers, got {value!r}",
        ),
        _check(lambda v: len(set(v)) == len(v), "seeds must be distinct, got {value!r}"),
    ] = None
    repeats: Positive = None

    @model_validator(mode="after")
    def _one_seed_option(self) -> ConditionEntry:
        given = [k for k in ("seed", "seeds", "repeats") if k in self.model_fields_set]
        if len(given) > 1:
            raise ValueError(f"give only one of seed, seeds, repeats (got {', '.join(given)})")
        return self


def _conditions(value: Any) -> Any:
    return [{"name": c} if isinstance(c, str) else c for c in _non_empty_list(value)]


class GridFile(Entry):
    description: Text = ""
    tasks: Names
    limit: Annotated[
        Any,
        _check(lambda v: v is None or (_is_int(v) and v >= 1), "expected a positive integer or null, got {value!r}"),
    ] = None
    model_args: ModelArgs = {}
    conditions: Annotated[list[ConditionEntry], BeforeValidator(_conditions)]
    models: Annotated[list[ModelEntry], BeforeValidator(_non_empty_list)]


ENTRIES = {"models": ModelEntry, "conditions": ConditionEntry, "tiny": TinyEntry}


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


def validate(data: Any, path: Path) -> GridFile:
    """``data`` as a GridFile; a ValueError names the file, the first bad key and what it expected."""
    return validate_file(GridFile, data, path, _explain)


def _explain(error: dict[str, Any]) -> str:
    loc = [part for part in error["loc"] if part != "[key]"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        entry = GridFile
        for part in loc[:-1]:
            entry = ENTRIES.get(part, entry)
        message = f"unknown key; valid keys here: {', '.join(entry.model_fields)}"
    elif error["type"] == "missing":
        message = "missing (required)"
    elif error["type"] == "value_error":
        message = str(error["ctx"]["error"])
    elif error["type"] in ("model_type", "dict_type"):
        message = f"expected a mapping, got {kind(error['input'])}"
    else:
        message = error["msg"]
    return f"{key}: {message}"
