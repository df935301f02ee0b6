"""The study's plan: the config read and checked, its cells and its runs (cells x seeds), each with a
stable folder name.

Cells come from ``design:``. ``one_at_a_time``: the base recipe, and each factor level that differs from
it with the other factors at the base. ``factorial``: every combination of the factors' levels (``fraction:
half`` keeps the 2^(k-1) combinations of two-level factors whose level signs, first listed level -1,
second +1, multiply to +1: the half fraction with defining relation I = AB..K).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narrowgate.core.files import read_yaml
from narrowgate.core.schema import SAFE_NAME
from narrowgate.study import schema
from narrowgate.toy import FAMILY, ToyRecipe, examples_source, smoke_task

BASE = "base"
RUNS_DIR, REFERENCES_DIR, GRID_DIR = "runs", "references", "grid"
REFERENCE_TASK = "narrowgate_smoke_vqa"  # what a shipped (shapes) toy is asked under `tasks: own`
REFERENCE_EXAMPLES = "shapes"  # the drawings its analyses use


class StudyError(ValueError):
    """A study config or output folder that cannot be used; the message names the file and the key."""


def level_name(level: Any) -> str:
    """A level as it appears in folder names and tables: text as is, anything else as JSON (4, 0.5, true)."""
    return level if isinstance(level, str) else json.dumps(level)


Levels = tuple[tuple[str, Any], ...]  # a cell's (factor, level) pairs, in the config's factor order


def cell_name(levels: Levels) -> str:
    """``base`` for the base cell (no levels), else ``factor=level`` joined by ``+`` (``image_loss=0``,
    ``image_tokens=64+codebook=kmeans``)."""
    return "+".join(f"{factor}={level_name(level)}" for factor, level in levels) or BASE


@dataclass(frozen=True)
class Run:
    """One training run: a cell's recipe with one seed; ``levels`` are the cell's factor levels (none for
    the base cell of a one-at-a-time study, one for its other cells, every factor's in a factorial)."""

    levels: Levels
    recipe: ToyRecipe

    @property
    def cell(self) -> str:
        return cell_name(self.levels)

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

    @property
    def examples(self) -> str:
        """The ``narrowgate.analyses.data.load_examples`` source of the run's world."""
        return examples_source(self.recipe)

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

    @property
    def examples(self) -> str:
        return REFERENCE_EXAMPLES

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

    @property
    def factorial(self) -> bool:
        return self.file.design == "factorial"

    def base_level(self, factor: str) -> Any:
        return getattr(self.base, factor)

    @property
    def own_tasks(self) -> bool:
        """``tasks: own``: each checkpoint is asked its own world's smoke task."""
        return self.file.tasks == schema.OWN

    def tasks_of(self, checkpoint: Run | Reference) -> tuple[str, ...]:
        """The tasks a checkpoint is asked: the config's, or under ``tasks: own`` a run's own recipe's smoke
        task and a reference's ``REFERENCE_TASK``."""
        if not self.own_tasks:
            return tuple(self.file.tasks)
        return (smoke_task(checkpoint.recipe),) if isinstance(checkpoint, Run) else (REFERENCE_TASK,)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task of the study, in the order the checkpoints first ask them."""
        return tuple(dict.fromkeys(task for checkpoint in self.checkpoints() for task in self.tasks_of(checkpoint)))

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
    differs: list[Levels] = []  # the one-at-a-time cells: each level whose recipe is not the base's
    for factor, levels in file.factors.items():
        names = [level_name(level) for level in levels]
        for i, (level, name) in enumerate(zip(levels, names)):
            key = f"factors.{factor}[{i}]"
            if names.index(name) != i:
                raise fail(key, f"level {name} is listed twice")
            if not SAFE_NAME.fullmatch(name.removeprefix("-")):  # a folder name; negative numbers too
                raise fail(key, f"level {level!r} must be a number, true/false or a name of letters, digits, '.', '_', '+', '-'")
            if file.design == "factorial" and "+" in name:
                raise fail(key, f"level {name} must not contain '+': it joins a factorial cell's levels")
            if recipe(key, {**file.base, factor: level, "seed": file.seeds[0]}) != base:  # each level checked alone
                differs.append(((factor, level),))
    if file.fraction == "half":
        if file.design != "factorial":
            raise fail("fraction", "half needs design: factorial (it is a fraction of every combination of levels)")
        for factor, levels in file.factors.items():
            if len(levels) != 2:
                raise fail(f"factors.{factor}", f"fraction: half needs exactly two levels per factor, got {len(levels)}")
        if len(file.factors) < 2:
            raise fail("fraction", "half of one factor is a single cell, with nothing to compare; use fraction: full")
    # one at a time: a level equal to the base is the base cell
    cells = _factorial(file.factors, half=file.fraction == "half") if file.design == "factorial" else [(), *differs]
    # seed-major: an interrupted or cut-short study has every cell at its first seeds, not some cells at all seeds
    runs = tuple(
        Run(levels, recipe(f"factors: cell {cell_name(levels)}", {**file.base, **dict(levels), "seed": seed}))
        for seed in file.seeds
        for levels in cells
    )
    return Study(path, file, base, runs, tuple(Reference(toy) for toy in file.references))


def _factorial(factors: dict[str, list[Any]], half: bool) -> list[Levels]:
    """Every combination of levels (the last factor varying fastest); ``half``: those whose level signs
    (first listed -1, second +1) multiply to +1."""
    combos = itertools.product(*(list(enumerate(levels)) for levels in factors.values()))
    kept = [c for c in combos if not half or math.prod(1 if index else -1 for index, _ in c) == 1]
    return [tuple(zip(factors, (level for _, level in combo))) for combo in kept]
