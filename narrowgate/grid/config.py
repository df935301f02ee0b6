"""The grid config: read (``yaml.safe_load``), validated (``schema.py``) and turned into frozen specs:
models, conditions and their cells."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narrowgate.core.files import read_yaml
from narrowgate.grid import schema
from narrowgate.grid.schema import CONDITION_PARAMS


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
    tasks: tuple[str, ...] | None = None  # the grid's tasks this model runs (None: all)

    @property
    def local(self) -> bool:
        """Whether ``pretrained`` names a folder rather than a hub id (``name`` or ``org/name``)."""
        given = self.pretrained
        return given is not None and (Path(given).is_absolute() or given.startswith(".") or given.count("/") > 1)

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
class Cell:
    """One (model, condition, task) evaluation, with its position in the config for ordering tables."""

    model: ModelSpec
    condition: ConditionSpec
    task: str
    order: tuple[int, int, int]

    @property
    def id(self) -> str:
        return f"{self.model.name}/{self.condition.dirname}/{self.task}"

    def record(self, limit: int | None) -> dict[str, Any]:
        """The cell's identity; a done cell is reused only if its stored record is equal."""
        return {
            "cell": self.id,
            "model": self.model.record(),
            "condition": self.condition.record(),
            "task": self.task,
            "limit": limit,
        }


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
            if model.tasks is None or task in model.tasks
        ]


def load_config(path: str | os.PathLike) -> GridConfig:
    """Read and validate a grid config; a ConfigError names the file and the offending key."""
    path = Path(path)
    return parse_config(read_yaml(path, "grid", ConfigError), path)


def parse_config(data: Any, path: Path) -> GridConfig:
    """Validate an already-parsed config mapping (``path`` names it in errors and anchors relative paths)."""
    try:
        grid = schema.validate(data, path)
    except ValueError as error:
        raise ConfigError(str(error)) from None

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    conditions: list[ConditionSpec] = []
    labels: dict[str, int] = {}
    for i, entry in enumerate(grid.conditions):
        instances = _condition_specs(entry, f"conditions[{i}]", fail)
        label = instances[0].label
        if label in labels:
            raise fail(
                f"conditions[{i}]",
                f"label {label!r} is already used by conditions[{labels[label]}]; give one of them a distinct `label:`",
            )
        labels[label] = i
        conditions.extend(instances)

    models = [_model_spec(entry, grid.model_args, path) for entry in grid.models]
    for i, model in enumerate(models):
        unknown = [t for t in model.tasks or () if t not in grid.tasks]
        if unknown:
            raise fail(f"models[{i}].tasks", f"{', '.join(unknown)} not among the grid's tasks ({', '.join(grid.tasks)})")
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail("models", f"duplicate model name(s) {', '.join(duplicates)}; names must be unique")
    return GridConfig(path, grid.description, tuple(grid.tasks), tuple(conditions), tuple(models), grid.limit)


def _condition_specs(entry: schema.ConditionEntry, key: str, fail) -> list[ConditionSpec]:
    """One spec, or one per seed of a repeated condition; the engine checks the name and its options."""
    label = entry.label or entry.name
    params = {k: getattr(entry, k) for k in CONDITION_PARAMS if k in entry.model_fields_set}
    seeds = list(range(entry.repeats)) if entry.repeats is not None else entry.seeds
    instances = (
        [ConditionSpec(label, entry.name, params)]
        if seeds is None
        else [ConditionSpec(label, entry.name, {**params, "seed": s}, repeated=True) for s in seeds]
    )
    for spec in instances:
        try:
            spec.make()
        except (ValueError, TypeError) as error:
            raise fail(key, str(error)) from None
    return instances


def check_checkpoints(path: Path, models: list[ModelSpec]) -> None:
    """One ConfigError naming every local checkpoint folder of ``models`` that does not exist, before
    anything runs (rather than one failed cell per condition and task)."""
    missing = [f"{m.name}: {m.pretrained}" for m in models if m.local and not Path(m.pretrained).is_dir()]
    if missing:
        raise ConfigError(
            f"{path}: models: no checkpoint folder at {'; '.join(missing)} (paths starting with ./ or ../ are "
            f"relative to the config file's folder {path.parent.resolve()}; others to the current folder)"
        )


def _model_spec(entry: schema.ModelEntry, defaults: dict[str, Any], path: Path) -> ModelSpec:
    """A hub id or path as given (``./`` and ``../`` relative to the config file, ``~`` expanded), or a
    tiny checkpoint."""
    pretrained = entry.pretrained
    if pretrained is not None and pretrained.startswith(("./", "../")):
        pretrained = str((path.parent / pretrained).resolve())
    elif pretrained is not None and pretrained.startswith("~"):
        pretrained = str(Path(pretrained).expanduser())
    tiny_seed = None if entry.tiny is None else entry.tiny.seed
    tasks = None if entry.tasks is None else tuple(entry.tasks)
    return ModelSpec(entry.name, entry.family, pretrained, tiny_seed, {**defaults, **entry.model_args}, tasks)
