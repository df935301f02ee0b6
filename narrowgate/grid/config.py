"""The grid config: its YAML schema, validated into frozen specs; every mistake names the file and key."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narrowgate.grid.cells import Cell

TOP_KEYS = ("description", "tasks", "limit", "model_args", "conditions", "models")
MODEL_KEYS = ("name", "family", "pretrained", "tiny", "model_args")
TINY_KEYS = ("seed",)
CONDITION_KEYS = ("name", "label", "layers", "knockout", "k", "seed", "seeds", "repeats")
# keyword arguments of interventions.make_condition that a config may set
CONDITION_PARAMS = ("layers", "knockout", "k", "seed")
# names and labels become folder names
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class ConfigError(ValueError):
    """A grid config that does not follow the schema; the message names the file and the bad key."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the grid: ``pretrained`` (hub id or resolved path) or a tiny checkpoint's seed."""

    name: str
    family: str
    pretrained: str | None
    tiny_seed: int | None
    model_args: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What identifies this model's results (written to cell.json, compared on resume)."""
        source = {"tiny": {"seed": self.tiny_seed}} if self.tiny_seed is not None else {"pretrained": self.pretrained}
        return {"name": self.name, "family": self.family, **source, "model_args": dict(self.model_args)}


@dataclass(frozen=True)
class ConditionSpec:
    """One condition instance: ``name`` for ``interventions.make_condition`` with ``params``; repeats of one
    condition share a ``label`` and differ in ``params['seed']``."""

    label: str
    name: str
    params: dict[str, Any]
    repeated: bool = False

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")

    @property
    def dirname(self) -> str:
        return f"{self.label}-seed{self.seed}" if self.repeated else self.label

    def make(self):
        """The intervention-engine condition object."""
        from interventions import make_condition

        return make_condition(self.name, **self.params)

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "name": self.name, "repeated": self.repeated, **self.params}


@dataclass(frozen=True)
class GridConfig:
    path: Path
    description: str
    tasks: tuple[str, ...]
    conditions: tuple[ConditionSpec, ...]
    models: tuple[ModelSpec, ...]
    limit: int | None

    def cells(self) -> list[Cell]:
        """Every cell, model-major (a model's cells run together on one load), then condition, then task."""
        labels = list(dict.fromkeys(c.label for c in self.conditions))
        return [
            Cell(model, condition, task, (m, labels.index(condition.label), t))
            for m, model in enumerate(self.models)
            for condition in self.conditions
            for t, task in enumerate(self.tasks)
        ]


def load_config(path: str | os.PathLike) -> GridConfig:
    """Read and validate a grid config; a ConfigError names the file and the offending key."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read grid config {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: Path) -> GridConfig:
    """Validate an already-parsed config mapping (``path`` names it in errors and anchors relative paths)."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping with keys {', '.join(TOP_KEYS)}; got {_kind(data)}")
    _check_keys(data, TOP_KEYS, "", fail)
    for key in ("tasks", "conditions", "models"):
        if key not in data:
            raise fail(key, "missing (required)")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected text, got {_kind(description)}")
    tasks = _string_list(data["tasks"], "tasks", fail)
    limit = data.get("limit")
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise fail("limit", f"expected a positive integer or null, got {limit!r}")
    defaults = _model_args(data.get("model_args", {}), "model_args", fail)

    if not isinstance(data["conditions"], list) or not data["conditions"]:
        raise fail("conditions", f"expected a non-empty list, got {_kind(data['conditions'])}")
    conditions: list[ConditionSpec] = []
    labels: dict[str, int] = {}
    for i, entry in enumerate(data["conditions"]):
        instances = _parse_condition(entry, f"conditions[{i}]", fail)
        label = instances[0].label
        if label in labels:
            raise fail(
                f"conditions[{i}]",
                f"label {label!r} is already used by conditions[{labels[label]}]; give one of them a distinct `label:`",
            )
        labels[label] = i
        conditions.extend(instances)

    if not isinstance(data["models"], list) or not data["models"]:
        raise fail("models", f"expected a non-empty list, got {_kind(data['models'])}")
    models = [_parse_model(entry, f"models[{i}]", defaults, path, fail) for i, entry in enumerate(data["models"])]
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail("models", f"duplicate model name(s) {', '.join(duplicates)}; names must be unique")
    return GridConfig(path, description, tuple(tasks), tuple(conditions), tuple(models), limit)


def _parse_condition(entry: Any, key: str, fail) -> list[ConditionSpec]:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise fail(key, f"expected a condition name or a mapping, got {_kind(entry)}")
    _check_keys(entry, CONDITION_KEYS, key, fail)
    name = entry.get("name")
    if not isinstance(name, str):
        raise fail(f"{key}.name", f"expected a condition name, got {_kind(name)}")
    label = entry.get("label", name)
    if not isinstance(label, str) or not SAFE_NAME.fullmatch(label):
        raise fail(f"{key}.label", f"expected letters, digits, '.', '_', '+', '-' (a folder name), got {label!r}")
    given = [k for k in ("seed", "seeds", "repeats") if k in entry]
    if len(given) > 1:
        raise fail(key, f"give only one of seed, seeds, repeats (got {', '.join(given)})")
    params = {k: entry[k] for k in CONDITION_PARAMS if k in entry and k != "seed"}
    if "k" in params and (not _is_int(params["k"]) or params["k"] < 1):
        raise fail(f"{key}.k", f"expected a positive integer, got {params['k']!r}")
    seeds: list[int] | None = None
    if "repeats" in entry:
        repeats = entry["repeats"]
        if not _is_int(repeats) or repeats < 1:
            raise fail(f"{key}.repeats", f"expected a positive integer, got {repeats!r}")
        seeds = list(range(repeats))
    elif "seeds" in entry:
        seeds = entry["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds):
            raise fail(f"{key}.seeds", f"expected a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise fail(f"{key}.seeds", f"seeds must be distinct, got {seeds!r}")
    elif "seed" in entry:
        if not _is_int(entry["seed"]):
            raise fail(f"{key}.seed", f"expected an integer, got {entry['seed']!r}")
        params["seed"] = entry["seed"]
    instances = (
        [ConditionSpec(label, name, params)]
        if seeds is None
        else [ConditionSpec(label, name, {**params, "seed": s}, repeated=True) for s in seeds]
    )
    for spec in instances:  # the engine checks the name and its parameters; report them against the key
        try:
            spec.make()
        except (ValueError, TypeError) as error:
            raise fail(key, str(error)) from None
    return instances


def _parse_model(entry: Any, key: str, defaults: dict[str, Any], path: Path, fail) -> ModelSpec:
    from interventions.families import FAMILIES

    if not isinstance(entry, dict):
        raise fail(key, f"expected a mapping with keys {', '.join(MODEL_KEYS)}, got {_kind(entry)}")
    _check_keys(entry, MODEL_KEYS, key, fail)
    name = entry.get("name")
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise fail(f"{key}.name", f"expected letters, digits, '.', '_', '+', '-' (a folder name), got {name!r}")
    family = entry.get("family")
    if family not in FAMILIES:
        raise fail(f"{key}.family", f"unknown family {family!r}; known families: {', '.join(sorted(FAMILIES))}")
    if ("pretrained" in entry) == ("tiny" in entry):
        raise fail(key, "give exactly one of `pretrained:` (hub id or path) and `tiny:` (a tiny random checkpoint)")
    pretrained = tiny_seed = None
    if "pretrained" in entry:
        pretrained = entry["pretrained"]
        if not isinstance(pretrained, str) or not pretrained:
            raise fail(f"{key}.pretrained", f"expected a hub id or a path, got {_kind(pretrained)}")
        if pretrained.startswith(("./", "../")):
            pretrained = str((path.parent / pretrained).resolve())
    else:
        tiny = entry["tiny"]
        if tiny is True:
            tiny = {}
        if not isinstance(tiny, dict):
            raise fail(f"{key}.tiny", f"expected `true` or a mapping like {{seed: 0}}, got {tiny!r}")
        _check_keys(tiny, TINY_KEYS, f"{key}.tiny", fail)
        tiny_seed = tiny.get("seed", 0)
        if not _is_int(tiny_seed):
            raise fail(f"{key}.tiny.seed", f"expected an integer, got {tiny_seed!r}")
    model_args = {**defaults, **_model_args(entry.get("model_args", {}), f"{key}.model_args", fail)}
    return ModelSpec(name, family, pretrained, tiny_seed, model_args)


def _model_args(value: Any, key: str, fail) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(key, f"expected a mapping of keyword arguments for model_wrappers.load_model, got {_kind(value)}")
    for name, arg in value.items():
        if not isinstance(name, str):
            raise fail(key, f"argument names must be text, got {name!r}")
        if name in ("family", "pretrained", "condition", *CONDITION_PARAMS):
            raise fail(f"{key}.{name}", "is set by the grid (from the model entry and from each condition)")
        if arg is not None and not isinstance(arg, (str, int, float, bool)):
            raise fail(f"{key}.{name}", f"expected a single value (text, number, true/false), got {_kind(arg)}")
    return dict(value)


def _string_list(value: Any, key: str, fail) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(key, f"expected a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise fail(key, f"names must be distinct, got {value!r}")
    return list(value)


def _check_keys(mapping: dict, allowed: Iterable[str], key: str, fail) -> None:
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        where = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise fail(where, f"unknown key; valid keys here: {', '.join(allowed)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
