"""The grid config file's schema (pydantic): its keys, their types and the checks within one entry.

The helpers (values taken as YAML gives them, one error naming the file and the key) are
``narrowgate.core.schema``'s; a validation error becomes one ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, field_validator, model_validator

from narrowgate.core.schema import (
    Entry,
    Int,
    Names,
    Positive,
    SafeName,
    Text,
    check,
    explain,
    is_int,
    kind,
    validate_file,
)

# keyword arguments of interventions.make_condition that a config may set
CONDITION_PARAMS = ("layers", "knockout", "k", "seed")

ArgName = Annotated[
    Any,
    check(lambda v: isinstance(v, str), "argument names must be text, got {value!r}"),
    check(
        lambda v: v not in ("family", "pretrained", "condition", *CONDITION_PARAMS),
        "is set by the grid (from the model entry and from each condition)",
    ),
]
ArgValue = Annotated[
    Any,
    check(
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
    from model_wrappers.registry import family_names

    if value not in family_names():
        raise ValueError(f"unknown family {value!r}; known families: {', '.join(family_names())}")
    return value


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
        Any, check(lambda v: isinstance(v, str) and v, "expected a hub id or a path, got {kind}")
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
    name: Annotated[Any, check(lambda v: isinstance(v, str), "expected a condition name, got {kind}")]
    label: SafeName = None
    layers: Any = None  # layers and knockout are checked by interventions.make_condition
    knockout: Any = None
    k: Positive = None
    seed: Int = None
    seeds: Annotated[
        Any,
        check(
            lambda v: isinstance(v, list) and v and all(map(is_int, v)),
            "expected a non-empty list of integers, got {value!r}",
        ),
        check(lambda v: len(set(v)) == len(v), "seeds must be distinct, got {value!r}"),
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
        check(lambda v: v is None or (is_int(v) and v >= 1), "expected a positive integer or null, got {value!r}"),
    ] = None
    model_args: ModelArgs = {}
    conditions: Annotated[list[ConditionEntry], BeforeValidator(_conditions)]
    models: Annotated[list[ModelEntry], BeforeValidator(_non_empty_list)]


ENTRIES = {"models": ModelEntry, "conditions": ConditionEntry, "tiny": TinyEntry}


def validate(data: Any, path: Path) -> GridFile:
    """``data`` as a GridFile; a ValueError names the file, the first bad key and what it expected."""
    return validate_file(GridFile, data, path, lambda error: explain(error, _valid_keys))


def _valid_keys(loc: list[Any]) -> list[str]:
    """The keys of the grid-file mapping that holds the key at ``loc``."""
    entry = GridFile
    for part in loc[:-1]:
        entry = ENTRIES.get(part, entry)
    return list(entry.model_fields)
