"""Plain lmms_eval runs as cells: the leaderboard of an ``lmms_eval --output_path DIR --log_samples`` folder.

lmms-eval writes each run to ``DIR/<model>/<date>_results.json`` plus ``<date>_samples_<task>.jsonl``
per task. Every sample of a narrowgate model carries the ``"narrowgate"`` audit record
(``model_wrappers.audit``): the wrapper's name, the checkpoint and the condition with its options. From it
a run's rows are: the model = checkpoint (plus the model_args that change outputs), the condition = its
name plus the options that differ from the defaults; runs of one condition that differ only in ``seed``
are repeats. A run repeated later (same model, condition, seed and task) replaces the earlier one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from interventions.conditions import OPTIONS
from narrowgate.grid import GRID_FILE
from narrowgate.leaderboard.scores import CellResult, read_scores

AUDIT_KEY = "narrowgate"
# model_args that name the condition (read from the audit record) or do not change the outputs
CONDITION_ARGS = ("condition", *OPTIONS)
NEUTRAL_ARGS = ("pretrained", "batch_size", "device", "device_map")
GRID_CELL_DEPTH = 5  # OUTPUT/MODEL/CONDITION/TASK/<lmms-eval model>/<date>_results.json


def read_runs(directory: str | Path, *, skip: list[Path], first_model: int, notes: list[str]) -> list[CellResult]:
    """Every task of every narrowgate run under ``directory`` outside the ``skip`` folders (grid cells);
    model indices in ``order`` start at ``first_model``. Runs without audit records are noted and skipped."""
    found: dict[tuple, tuple[Path, dict[str, Any]]] = {}
    grid = (Path(directory) / GRID_FILE).is_file()
    paths = [
        p
        for p in Path(directory).rglob("*_results.json")
        if not any(p.is_relative_to(s) for s in skip)
        # a grid's MODEL/CONDITION/TASK/<run>/ files count only once the cell's marker says it is done
        and not (grid and len(p.relative_to(directory).parts) == GRID_CELL_DEPTH)
    ]
    for results_path in sorted(paths, key=lambda p: (p.name, str(p))):  # <date>_results.json: oldest first
        if any(part.endswith(".partial") for part in results_path.parts):
            continue
        date = results_path.name.removesuffix("_results.json")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        for task in results.get("configs", {}):
            samples_path = results_path.with_name(f"{date}_samples_{task}.jsonl")
            if not samples_path.is_file():
                notes.append(f"{results_path}: no samples for {task} (run without --log_samples?); not tabulated.")
                continue
            audit = _first_audit(samples_path)
            if audit is None:
                notes.append(f"{samples_path}: no narrowgate records (not a narrowgate model); not tabulated.")
                continue
            run = _describe(audit, results.get("config", {}).get("model_args"))
            key = (run["model_key"], run["label"], run["seed"], task)
            if key in found:
                notes.append(f"{found[key][0]} is superseded by the later run {samples_path}.")
            found[key] = (samples_path, {**run, "results": results, "results_path": results_path, "task": task})

    models = list(dict.fromkeys(run["model_key"] for _, run in found.values()))
    names = _model_names({run["model_key"]: run for _, run in found.values()})
    labels = sorted({(run["rank"], run["label"]) for _, run in found.values()})
    tasks = sorted({key[3] for key in found})
    cells = []
    for samples_path, run in found.values():
        metrics, scores = read_scores(run["results"], run["results_path"], samples_path, run["task"])
        order = (
            first_model + models.index(run["model_key"]),
            labels.index((run["rank"], run["label"])),
            tasks.index(run["task"]),
        )
        cells.append(
            CellResult(
                model=names[run["model_key"]],
                condition=run["label"],
                condition_name=run["condition"],
                seed=run["seed"],
                task=run["task"],
                order=order,
                metrics=metrics,
                scores=scores,
                path=samples_path,
            )
        )
    return cells


def _first_audit(samples_path: Path) -> dict[str, Any] | None:
    with open(samples_path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                audit = json.loads(line).get(AUDIT_KEY)
                return audit[0] if isinstance(audit, list) else audit
    return None


def _describe(audit: dict[str, Any], model_args: str | dict | None) -> dict[str, Any]:
    """A run's model identity, condition label and seed, from its audit record and model_args."""
    from lmms_eval.utils import simple_parse_args_string

    from interventions import CONDITIONS, Condition

    condition = dict(audit["condition"])
    name = condition.pop("name")
    seed = condition.pop("seed", None)
    defaults = {field.name: field.default for field in dataclasses.fields(Condition)}  # a flow's cut has none
    changed = {k: v for k, v in condition.items() if v != defaults.get(k)}
    label = name + "".join(f" {k}={v}" for k, v in changed.items())
    args = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    extra = {k: v for k, v in sorted(args.items()) if k not in (*CONDITION_ARGS, *NEUTRAL_ARGS)}
    family = audit["model"].removesuffix(f"_{name}")
    pretrained = str(audit["pretrained"])
    return {
        "model_key": (family, pretrained, tuple(extra.items())),
        "family": family,
        "pretrained": pretrained,
        "extra": extra,
        "condition": name,
        "label": label,
        "seed": seed,
        "rank": list(CONDITIONS).index(name) if name in CONDITIONS else len(CONDITIONS),
    }


def _model_names(runs: dict[tuple, dict[str, Any]]) -> dict[tuple, str]:
    """Short row names: the checkpoint's folder name (or hub id) and any model_args that set it apart;
    the wrapper family is prefixed where two families ran the same checkpoint."""
    names = {}
    for key, run in runs.items():
        pretrained = run["pretrained"]
        short = Path(pretrained).name if Path(pretrained).is_absolute() or pretrained.startswith(".") else pretrained
        names[key] = short + "".join(f" {k}={v}" for k, v in run["extra"].items())
    clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {key: f"{runs[key]['family']}:{n}" if n in clashes else n for key, n in names.items()}
