"""The study's plan: the config read and checked, its cells (the base recipe, and each factor level that
differs from it, one factor at a time) and its runs (cells x seeds), each with a stable folder name."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narrowgate.core.files import read_yaml
from narrowgate.core.schema import SAFE_NAME
from narrowgate.study import schema
from narrowgate.toy import FAMILY, ToyRecipe

BASE = "base"
RUNS_DIR, REFERENCES_DIR, GRID_DIR = "runs", "references", "grid"


class StudyError(ValueError):
    """A study config or output folder that cannot be used; the message names the file and the key."""


def level_name(level: Any) -> str:
    """A level as it appears in folder names and tables: text as is, anything else as JSON (4, 0.5, true)."""
    return level if isinstance(level, str) else json.dumps(level)


@dataclass(frozen=True)
class Run:
    """One training run: a cell's recipe with one seed. ``factor`` is None for the base cell."""

    factor: str | None
    level: Any
    recipe: ToyRecipe

    @property
    def cell(self) -> str:
        return BASE if self.factor is None else f"{self.factor}={level_name(self.level)}"

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def id(self) -> str:
        return f"{self.cell}/seed{self.seed}"

    @property
    def name(self) -> str:
        """The run's model name in the grid (a folder name there)."""
        return f"{self.cell.replace('=', '-')}_seed{self.seed}"

    def folder(self, output: Path) -> Path:
        return output / RUNS_DIR / self.cell / f"seed{self.seed}"

    def checkpoint(self, output: Path) -> Path:
        return self.folder(output) / "model"


@dataclass(frozen=True)
class Reference:
    """A shipped toy evaluated next to the study's runs as an anchor (``references:``)."""

    toy: str

    @property
    def id(self) -> str:
        return f"reference/{self.toy}"

    @property
    def name(self) -> str:
        return f"reference-{self.toy}"

    def folder(self, output: Path) -> Path:
        return output / REFERENCES_DIR / self.toy

    def checkpoint(self, output: Path) -> Path:
        from narrowgate.analyses.subject import TOYS
        from narrowgate.toy import TOY_CHECKPOINT

        return TOY_CHECKPOINT.parent / TOYS[self.toy]


@dataclass(frozen=True)
class Study:
    path: Path
    file: schema.StudyFile
    base: ToyRecipe  # the base recipe with the first seed
    runs: tuple[Run, ...]
    references: tuple[Reference, ...]

    @property
    def factors(self) -> dict[str, list[Any]]:
        return self.file.factors

    def base_level(self, factor: str) -> Any:
        return getattr(self.base, factor)

    def checkpoints(self) -> tuple[Run | Reference, ...]:
        """Everything evaluated: the runs, then the references."""
        return (*self.runs, *self.references)

    def record(self) -> dict[str, Any]:
        return {
            **self.file.model_dump(),
            "family": FAMILY,
            "runs": {run.id: dataclasses.asdict(run.recipe) for run in self.runs},
        }


def load_study(path: str | os.PathLike) -> Study:
    """Read and check a study config; a StudyError names the file and the offending key."""
    path = Path(path)
    return plan(read_yaml(path, "study", StudyError), path)


def plan(data: Any, path: Path) -> Study:
    """The study of an already-parsed config: every run's recipe built (and so checked) up front."""
    try:
        file = schema.validate(data, path)
    except ValueError as error:
        raise StudyError(str(error)) from None
    fields = [f.name for f in dataclasses.fields(ToyRecipe)]

    def fail(key: str, message: str) -> StudyError:
        return StudyError(f"{path}: {key}: {message}")

    def recipe(key: str, values: dict[str, Any]) -> ToyRecipe:
        try:
            return ToyRecipe(**values)
        except (TypeError, ValueError) as error:
            raise fail(key, str(error)) from None

    for section, names in (("base", file.base), ("factors", file.factors)):
        for name in names:
            if name == "seed":
                raise fail(f"{section}.seed", "the seeds come from `seeds:`, not from the recipe")
            if name not in fields:
                raise fail(f"{section}.{name}", f"unknown recipe field; valid ToyRecipe fields: {', '.join(fields)}")
    base = recipe("base", {**file.base, "seed": file.seeds[0]})
    cells: list[tuple[str | None, Any, dict[str, Any]]] = [(None, None, dict(file.base))]
    for factor, levels in file.factors.items():
        names = [level_name(level) for level in levels]
        for i, (level, name) in enumerate(zip(levels, names)):
            key = f"factors.{factor}[{i}]"
            if names.index(name) != i:
                raise fail(key, f"level {name} is listed twice")
            if not SAFE_NAME.fullmatch(name.removeprefix("-")):  # a folder name; negative numbers too
                raise fail(key, f"level {level!r} must be a number, true/false or a name of letters, digits, '.', '_', '+', '-'")
            values = {**file.base, factor: level}
            if recipe(key, {**values, "seed": file.seeds[0]}) != base:  # a level equal to the base is the base cell
                cells.append((factor, level, values))
    # seed-major: an interrupted or cut-short study has every cell at its first seeds, not some cells at all seeds
    runs = tuple(
        Run(factor, level, recipe("seeds", {**values, "seed": seed})) for seed in file.seeds for factor, level, values in cells
    )
    return Study(path, file, base, runs, tuple(Reference(toy) for toy in file.references))
