"""The study config file's schema (pydantic): its keys, their types and the checks within one entry.

Recipe values (``base:`` and each factor's levels) are checked later, by building the ``ToyRecipe`` of
every run (``plan.py``), so the study needs no change when the recipe gains a field. As in the grid's
schema (helpers of ``narrowgate.core.schema``), values are taken as YAML gives them and a validation
error names the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

from narrowgate.core.schema import Entry, Names, Positive, Text, check, explain, is_int, kind, validate_file
from narrowgate.grid.schema import ModelArgs

# what a gate share needs: the image's effect (baseline - image_ablated) and the two knockouts of the gate
REQUIRED_CONDITIONS = ("baseline", "gate_ablated", "gate_only", "image_ablated")
# how the factors make cells (plan.py): around the base one at a time, or every combination of levels
DESIGNS = ("one_at_a_time", "factorial")
FRACTIONS = ("full", "half")  # half: the 2^(k-1) fraction of a two-level factorial (I = AB..K)
OWN = "own"  # `tasks: own`: each run is asked its own recipe's smoke task (narrowgate.toy.smoke_task)


class AnalysesEntry(Entry):
    """Sample counts of the in-process analyses (``narrowgate.analyses``) run on every checkpoint."""

    attention: Positive = 32  # shapes drawings whose text->image attention is summed
    patching: Positive = 24  # base/target pairs whose gate is patched
    batch_size: Positive = 16


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of ToyRecipe fields, got {kind(value)}")
    return value


def _factors(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of ToyRecipe field -> [levels], got {kind(value)}")
    for name, levels in value.items():
        if not isinstance(levels, list) or not levels:
            raise ValueError(f"{name}: expected a non-empty list of levels, got {kind(levels)}")
    return value


def _references(value: Any) -> Any:
    from narrowgate.analyses.subject import TOYS

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(set(value)) != len(value):
        raise ValueError(f"expected a list of distinct shipped toy names ({', '.join(TOYS)}), got {value!r}")
    unknown = [v for v in value if v not in TOYS]
    if unknown:
        raise ValueError(f"unknown shipped toy(s) {', '.join(unknown)}; valid: {', '.join(TOYS)}")
    return value


def _conditions(value: Any) -> Any:
    if isinstance(value, list):
        missing = [c for c in REQUIRED_CONDITIONS if c not in value]
        if missing:
            raise ValueError(f"the gate shares need {', '.join(REQUIRED_CONDITIONS)}; missing {', '.join(missing)}")
    return value


class StudyFile(Entry):
    description: Text = ""
    design: Annotated[Any, check(lambda v: v in DESIGNS, f"expected one of {', '.join(DESIGNS)}, got {{value!r}}")] = DESIGNS[0]
    fraction: Annotated[Any, check(lambda v: v in FRACTIONS, f"expected one of {', '.join(FRACTIONS)}, got {{value!r}}")] = FRACTIONS[0]
    base: Annotated[dict[str, Any], BeforeValidator(_mapping)] = {}
    factors: Annotated[dict[str, list[Any]], BeforeValidator(_factors)] = {}
    seeds: Annotated[
        Any,
        check(
            lambda v: isinstance(v, list) and v and all(map(is_int, v)), "expected a non-empty list of integers, got {value!r}"
        ),
        check(lambda v: len(set(v)) == len(v), "seeds must be distinct, got {value!r}"),
    ]
    conditions: Annotated[Names, BeforeValidator(_conditions)] = list(REQUIRED_CONDITIONS)
    tasks: Annotated[
        Any,
        check(
            lambda v: v == OWN or (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)),
            f"expected `{OWN}` (each run's own smoke task) or a non-empty list of task names, got {{value!r}}",
        ),
        check(lambda v: v == OWN or len(set(v)) == len(v), "names must be distinct, got {value!r}"),
    ] = ["narrowgate_smoke_vqa"]
    limit: Annotated[
        Any, check(lambda v: v is None or (is_int(v) and v >= 1), "expected a positive integer or null, got {value!r}")
    ] = None
    model_args: ModelArgs = {"batch_size": 8}
    analyses: AnalysesEntry = AnalysesEntry()
    jobs: Positive = 1
    references: Annotated[list[str], BeforeValidator(_references)] = []


def validate(data: Any, path: Path) -> StudyFile:
    """``data`` as a StudyFile; a ValueError names the file, the first bad key and what it expected."""
    return validate_file(StudyFile, data, path, lambda error: explain(error, _valid_keys))


def _valid_keys(loc: list[Any]) -> list[str]:
    """The keys of the study-file mapping that holds the key at ``loc``."""
    return list((AnalysesEntry if loc[:1] == ["analyses"] else StudyFile).model_fields)
