"""Measuring a toy checkpoint (in process and through lmms-eval) and writing it atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from interventions.conditions import PAPER_CONDITIONS
from narrowgate_tasks import prompts

from .recipe import FAMILY, RECIPE_FILE, REPORT_FILE, SPLITS, ToyRecipe
from .world import SHAPES, World, eval_specs, prompt_text, question_items

if TYPE_CHECKING:
    from transformers import ChameleonForConditionalGeneration, ProcessorMixin

# Every knockout condition of the paper (gate_randomized edits hidden states rather than attention edges).
CONDITIONS: tuple[str, ...] = tuple(name for name in PAPER_CONDITIONS if name != "gate_randomized")


def accuracy(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    items: Sequence[tuple[object, str]],
    condition: str = "baseline",
    batch_size: int = 48,
    world: World = SHAPES,
) -> dict[str, float]:
    """Exact-match accuracy per question kind (and ``macro``, their mean) of greedy answers under a condition.

    The same path as the Chameleon wrapper: processor with ``return_for_text_completion``, layouts from
    the processed ids, generation inside ``intervene``, the first line of the new tokens scored.
    """
    import torch

    from interventions import family_spec, find_layouts, intervene, make_condition

    ids = family_spec(FAMILY).token_ids(processor.tokenizer)
    correct: dict[str, list[bool]] = {kind: [] for kind in world.kinds}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = processor(
            text=[prompt_text(kind, world) for _, kind in chunk],
            images=[world.draw(spec) for spec, _ in chunk],
            padding=True,
            return_tensors="pt",
            return_for_text_completion=True,
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        layouts = [
            dataclasses.replace(layout, key=f"toy/{start + row}")
            for row, layout in enumerate(find_layouts(inputs["input_ids"], inputs["attention_mask"], ids))
        ]
        with torch.inference_mode(), intervene(model, make_condition(condition), layouts):
            generated = model.generate(
                **inputs,
                max_new_tokens=4,
                do_sample=False,
                suppress_tokens=list(ids.image),
                pad_token_id=processor.tokenizer.pad_token_id,
            )
        texts = processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for (spec, kind), text in zip(chunk, texts):
            correct[kind].append(prompts.first_line(text) == spec.answer(kind))
    scores = {kind: sum(hits) / len(hits) for kind, hits in correct.items() if hits}
    scores["macro"] = sum(scores.values()) / len(scores)
    return scores


def measure(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    conditions: Sequence[str] = CONDITIONS,
    splits: Sequence[str] = SPLITS,
    world: World = SHAPES,
) -> dict[str, dict[str, float]]:
    """Macro accuracy, ``{condition: {split: accuracy}}``, every drawing asked every question of ``world``."""
    return {
        condition: {
            split: accuracy(
                model, processor, question_items(eval_specs(split, world), world), condition, world=world
            )["macro"]
            for split in splits
        }
        for condition in conditions
    }


def smoke_accuracy(path: str | Path, conditions: Sequence[str] = CONDITIONS, world: World = SHAPES) -> dict[str, float]:
    """The VQA accuracy on ``world``'s smoke task of the checkpoint at ``path`` through lmms-eval (the
    registered Chameleon wrapper, in process, float32 on the CPU), for each condition on one load."""
    from interventions import make_condition
    from model_wrappers import load_model
    from narrowgate.core.evaluation import evaluate, task_manager

    task = world.task
    manager = task_manager("ERROR", model_name=FAMILY)
    lm = load_model(FAMILY, str(path), device="cpu", dtype="float32", batch_size=8)
    scores = {}
    for condition in conditions:
        lm.set_condition(make_condition(condition))
        results = evaluate(lm, task, manager, verbosity="ERROR")
        scores[condition] = float(results["results"][task]["vqa_accuracy,none"])
    return scores


def save(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    recipe: ToyRecipe,
    out: str | Path,
    report: dict,
    extra: dict[str, object] | None = None,
) -> Path:
    """Write the model (float16), processor, recipe, report and ``extra`` JSON files (name -> content)
    into ``out``, replacing it as a whole: the folder is written next to ``out`` and renamed into place,
    so it is never half-written."""
    import shutil
    import tempfile

    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model.to(torch.float16).save_pretrained(tmp)
    model.to(torch.float32)
    processor.save_pretrained(tmp)
    (tmp / RECIPE_FILE).write_text(json.dumps(dataclasses.asdict(recipe), indent=2) + "\n")
    write_report(tmp, report)
    for name, content in (extra or {}).items():
        (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
    for path in (tmp, *tmp.iterdir()):  # mkdtemp and some writers create owner-only files
        path.chmod(0o755 if path.is_dir() else 0o644)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def write_report(out: Path, report: dict) -> None:
    tmp = out / f".{REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / REPORT_FILE)


def format_table(table: dict[str, dict[str, float]]) -> str:
    splits = list(next(iter(table.values())))
    lines = [f"  {'condition':<22}" + "".join(f"{s:>10}" for s in splits)]
    lines += [f"  {c:<22}" + "".join(f"{v:>10.3f}" for v in row.values()) for c, row in table.items()]
    return "\n".join(lines)
