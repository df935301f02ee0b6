"""Evaluating the study's checkpoints: one grid through lmms-eval, then each checkpoint's measures.

The grid holds every checkpoint x condition x task (one lmms-eval task setup, each model loaded once,
its conditions generated together; resumable: ``narrowgate.grid``). Each checkpoint then gets these
files in its folder, written atomically and skipped when present:

- ``gate_share.json``: per task, the per-document scores of each condition and the gate shares with
  their document-bootstrap CI (``narrowgate.leaderboard.summary.gate_share``);
- ``attention.json``: ``narrowgate.analyses.attention`` on the checkpoint's world's drawings (``examples``)
  asked the VQA questions (the study's task), plus ``gate_vs_image``: the gate's share of the text
  queries' attention to the image tokens + gate (the analysis's normalisation), mean over layers;
- ``patching.json``: ``narrowgate.analyses.patching``, plus ``flip_fraction``: among the pairs whose
  unpatched run prefers the target answer, the fraction that flips to the base answer when the gate's
  input to every layer comes from the base image (cumulative from layer 0), and ``flip_either``;
- ``gap.json``: ``narrowgate.analyses.gap``, plus ``gap_cosine`` and ``gap_homogeneity``, the median
  |cos| and the homogeneity, each the mean over layers;
- ``overlap.json``: ``narrowgate.analyses.overlap``, plus ``gate_chi`` and ``image_chi``: the best chi over
  layers (k below the smallest class, so the ceiling is 1), mean over label kinds, and ``chance_chi``;
- ``curve.json``: the learning curve train-toy wrote next to the checkpoint (``CURVE_FILE``), its last
  teacher-forced accuracy and whether it had flattened (``converged()``); None for a reference or a
  checkpoint trained before train-toy recorded curves (``reason`` says which);
- ``giveaway.json``: ``narrowgate.toy.giveaway``, how often one image token's code alone names the answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from narrowgate.core.files import write_json_atomic
from narrowgate.grid import (
    GRID_FILE,
    GridConfig,
    parse_config,
    run_grid,
)
from narrowgate.leaderboard.collect import (
    BASELINE,
    mean_over_seeds,
    paired_scores,
    read_cells,
)
from narrowgate.leaderboard.summary import IMAGE_ABLATED, SHARES, gate_share, image_effect, undefined_reason
from narrowgate.study.plan import GRID_DIR, Reference, Run, Study, StudyError
from narrowgate.toy import CURVE_FILE, FAMILY, giveaway

ANALYSES = ("attention", "patching", "gap", "overlap")
TRAINING = ("curve", "giveaway")  # measures of the training and the tokenizer, without loading the model
MEASURES = ("gate_share", *ANALYSES, *TRAINING)
LABELLED_EXAMPLES = 96  # the drawings the patching pairs and chi's neighbours come from (narrowgate analyze's default)
CONVERGED_WITHIN = 0.05  # the most the last fifth of the curve's mean accuracy may differ from the fifth before


def grid_config(study: Study, output: Path) -> GridConfig:
    """The grid of every checkpoint x condition x task; built before training too, so that a bad
    condition or model argument is reported (naming the study's config) before hours of training."""
    return parse_config(
        {
            "description": f"narrowgate study {study.path}",
            "tasks": list(study.tasks),
            "limit": study.file.limit,
            "model_args": dict(study.file.model_args),
            "conditions": list(study.file.conditions),
            "models": [
                {"name": c.name, "family": FAMILY, "pretrained": str(c.checkpoint(output))}
                | ({"tasks": list(study.tasks_of(c))} if study.own_tasks else {})
                for c in study.checkpoints()
            ],
        },
        study.path,
    )


def evaluate(study: Study, output: Path, log: Callable[[str], None], verbosity: str = "WARNING") -> None:
    """The grid over every checkpoint, then each checkpoint's missing measure files."""
    checkpoints = study.checkpoints()
    grid = grid_config(study, output)
    per = "its own task" if study.own_tasks else f"{len(study.tasks)} tasks"
    log(f"evaluating {len(checkpoints)} checkpoints x {len(study.file.conditions)} conditions x {per}")
    report = run_grid(grid, output / GRID_DIR, verbosity=verbosity, log=lambda m: log(f"grid: {m}"))
    if report.failed:
        raise StudyError(
            f"{len(report.failed)} grid cell(s) failed ({', '.join(s.cell for s in report.failed)}; details in "
            f"{output / GRID_DIR / GRID_FILE}); rerun to resume"
        )
    todo = [c for c in checkpoints if not all((c.folder(output) / f"{m}.json").is_file() for m in MEASURES)]
    if any(not (c.folder(output) / "gate_share.json").is_file() for c in todo):
        notes: list[str] = []
        cells = defaultdict(lambda: defaultdict(list))
        for cell in read_cells(output / GRID_DIR, notes):
            cells[cell.model][cell.condition_name].append(cell)
        for checkpoint in todo:
            path = checkpoint.folder(output) / "gate_share.json"
            if not path.is_file():
                write_json_atomic(path, gate_shares(checkpoint, cells[checkpoint.name], study.tasks_of(checkpoint)))
    for number, checkpoint in enumerate(todo, 1):
        log(f"analyses {number}/{len(todo)}: {checkpoint.id}")
        analyse(checkpoint, study, output)
        measure_training(checkpoint, output)


def gate_shares(checkpoint: Run | Reference, runs: dict[str, list], tasks) -> dict[str, Any]:
    """Per task: the per-document scores of the gate-share conditions (aligned by document, on the task's
    first metric with per-document scores) and each share with its document-bootstrap CI (None when the
    image effect's CI contains 0, so no share of it is defined: ``undefined`` says so)."""
    out: dict[str, Any] = {"id": checkpoint.id, "tasks": {}}
    names = [BASELINE, IMAGE_ABLATED, *SHARES.values()]
    for task in tasks:
        of_task = {name: [c for c in runs[name] if c.task == task] for name in names}
        missing = [name for name, found in of_task.items() if not found]
        if missing:
            raise StudyError(f"{checkpoint.id}: no finished grid cell for {task} under {', '.join(missing)}")
        metric = next((m for m in of_task[BASELINE][0].metrics if m in of_task[BASELINE][0].scores), None)
        if metric is None:
            raise StudyError(f"{checkpoint.id}: {task} has no metric with per-document scores, so no gate share")
        aligned = paired_scores([(of_task[n], mean_over_seeds(of_task[n], metric)) for n in names], task)
        scores = dict(zip(names, aligned))
        effect = image_effect(scores[BASELINE], scores[IMAGE_ABLATED])
        undefined = undefined_reason(effect)
        shares = {
            share: None if undefined else dataclasses.asdict(gate_share(scores[BASELINE], scores[name], scores[IMAGE_ABLATED]))
            for share, name in SHARES.items()
        }
        means = {name: sum(values) / len(values) for name, values in scores.items()}
        out["tasks"][task] = {
            "metric": metric,
            "means": means,
            "image_effect": effect.delta,
            "image_effect_ci": [effect.ci_low, effect.ci_high],
            "undefined": undefined,
            **shares,
            "scores": scores,
        }
    return out


def analyse(checkpoint: Run | Reference, study: Study, output: Path) -> None:
    """The analysis files of one checkpoint (loaded once, through its lmms-eval wrapper), each with the
    per-cell measure the study table reads."""
    from narrowgate.analyses import attention, gap, overlap, patching
    from narrowgate.analyses.data import load_examples
    from narrowgate.analyses.subject import Subject

    folder = checkpoint.folder(output)
    options = study.file.analyses
    pending = [name for name in ANALYSES if not (folder / f"{name}.json").is_file()]
    if not pending:
        return
    args = study.file.model_args
    subject = Subject(
        FAMILY, str(checkpoint.checkpoint(output)), device=args.get("device"), dtype=args.get("dtype"), batch_size=options.batch_size
    )
    labelled = load_examples(checkpoint.examples, LABELLED_EXAMPLES)
    if "attention" in pending:  # the study's tasks ask questions: the VQA prompt
        result = attention.analyse(subject, load_examples(checkpoint.examples, options.attention))
        result.write(folder, {"id": checkpoint.id, **result.summary, "gate_vs_image": result.summary["gate_share_mean"]})
    if "patching" in pending:
        result = patching.analyse(subject, labelled, pairs=options.patching, seed=0)
        cumulative = result.table[result.table["mode"] == "cumulative"].set_index("layer")
        every = {"flip_fraction": float(cumulative.loc[0, "flip_fraction"]), "flip_either": float(cumulative.loc[0, "flip_either"])}
        result.write(folder, {"id": checkpoint.id, **result.summary, **every})
    if "gap" in pending:
        result = gap.analyse(subject, load_examples(checkpoint.examples, options.attention))
        means = {"gap_cosine": float(result.table.cos_median.mean()), "gap_homogeneity": float(result.table.homogeneity.mean())}
        result.write(folder, {"id": checkpoint.id, **result.summary, **means})
    if "overlap" in pending:
        result = overlap.analyse(subject, labelled)
        best = result.table.groupby(["label", "token"]).chi.max().unstack().mean()  # best layer, mean over label kinds
        chis = {"gate_chi": float(best["gate"]), "image_chi": float(best["image"])}
        chance = sum(result.summary["chance"].values()) / len(result.summary["chance"])
        result.write(folder, {"id": checkpoint.id, **result.summary, **chis, "chance_chi": chance})


def converged(accuracy: list[float]) -> bool | None:
    """Whether the mean accuracy of the curve's last fifth of points is within ``CONVERGED_WITHIN`` of the
    fifth before it (fifths of at least one point); None for a curve of fewer than two points."""
    window = max(1, round(len(accuracy) / 5))
    if len(accuracy) < 2 * window:
        return None
    last, before = accuracy[-window:], accuracy[-2 * window : -window]
    return abs(sum(last) / window - sum(before) / window) <= CONVERGED_WITHIN


def curve(checkpoint: Run | Reference, output: Path) -> dict[str, Any]:
    """``curve.json``: the checkpoint's learning curve (steps, teacher-forced accuracy, text loss), its final
    accuracy and whether it converged; ``reason`` says why a checkpoint has none."""
    empty = {"id": checkpoint.id, "final_accuracy": None, "converged": None, "step": [], "accuracy": [], "text_loss": []}
    if isinstance(checkpoint, Reference):
        return empty | {"reason": "a shipped reference toy: no learning curve"}
    path = checkpoint.checkpoint(output) / CURVE_FILE
    if not path.is_file():
        return empty | {"reason": f"no {CURVE_FILE} next to the checkpoint (trained before train-toy recorded curves)"}
    recorded = json.loads(path.read_text())
    points = recorded["points"]
    series = {key: [point[key] for point in points] for key in ("step", "accuracy", "text_loss")}
    final = series["accuracy"][-1] if points else None
    return empty | {"probe": recorded["probe"], "n": recorded["n"], "final_accuracy": final, "converged": converged(series["accuracy"]), **series}


def measure_training(checkpoint: Run | Reference, output: Path) -> None:
    """The checkpoint's missing ``curve.json`` and ``giveaway.json``."""
    folder = checkpoint.folder(output)
    if not (folder / "curve.json").is_file():
        write_json_atomic(folder / "curve.json", curve(checkpoint, output))
    if not (folder / "giveaway.json").is_file():
        write_json_atomic(folder / "giveaway.json", {"id": checkpoint.id, **giveaway(checkpoint.checkpoint(output))})
