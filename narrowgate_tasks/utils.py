"""lmms-eval hooks of narrowgate's tasks, referenced from the YAMLs as ``narrowgate_tasks.utils.<name>``.

Documents (built by the ``*_docs`` process_docs hooks, which ignore lmms-eval's placeholder split):

- VQA tasks keep the ``lmms-lab/VQAv2`` schema (question_id, question, answers, multiple_choice_answer,
  image, ...), the smoke VQA data included.
- Caption tasks are normalised to ``image``, ``image_id``, ``refs`` (the reference captions, raw) and
  ``cider_corpus`` (the key of the task's reference corpus, see ``metrics.register_corpus``).

Scores per sample, as they appear in lmms-eval's ``*_samples_<task>.jsonl`` (one line per document):

- VQA: ``vqa_accuracy`` (a number).
- captions: ``cider_paper`` (a number: the authors' CIDEr-D of this caption with the idf of all the
  task's references, so the task's mean is exactly their corpus score; under ``--limit`` the idf still
  comes from the whole task). ``cider_ptb``, ``bleu4_ptb``, ``meteor_ptb``, ``rouge_l_ptb`` hold
  ``{"pred", "refs"}`` for the corpus-level standard pipeline and have no per-sample value; they are
  absent under ``NARROWGATE_SKIP_PTB=1`` (``narrowgate_tasks.java``). A ``*_ptb`` aggregation that fails
  (Java broken) logs the error and reports NaN, so that lmms-eval still writes the samples and every
  other score; the ``lmms_eval`` launcher then exits non-zero naming the metric.

Every task scores ``prompts.first_line`` of the model's continuation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import datasets
from loguru import logger

from narrowgate_tasks import java, metrics, prompts
from narrowgate_tasks.provenance import documents, ids_digest
from narrowgate_tasks.sources import (
    COCO2014_VAL_IMAGES,
    COCO_KARPATHY_TEST,
    FLICKR30K_TEST,
    VQAV2_VALIDATION,
    load_packaged,
    load_source,
)

PAPER_SEED = 42
PAPER_N = 2000
VQAV2_VALIDATION_ROWS = 214_354
CORPUS_COLUMN = "cider_corpus"


# ---------------------------------------------------------------------------------------------- documents


def paper_vqav2_indices(n_rows: int) -> list[int]:
    """The authors' VQAv2 questions: ``random.seed(42); random.sample(range(n_rows), 2000)``, in that order.

    Only meaningful over the full validation split in the official order, so other lengths are refused."""
    if n_rows != VQAV2_VALIDATION_ROWS:
        raise ValueError(
            f"the paper's VQAv2 subset samples row positions of the full validation split ({VQAV2_VALIDATION_ROWS} "
            f"questions in the official order), but this copy has {n_rows} rows; use a complete copy of "
            f"{VQAV2_VALIDATION.hub_id} validation, or narrowgate_vqav2_full"
        )
    return random.Random(PAPER_SEED).sample(range(n_rows), PAPER_N)


def select_paper_vqav2(ds: datasets.Dataset) -> datasets.Dataset:
    """The paper's 2000 questions of a VQAv2 validation copy; logs which ones (ids also in the samples log)."""
    subset = ds.select(paper_vqav2_indices(len(ds)))
    ids = [int(i) for i in subset["question_id"]]
    logger.info(
        f"narrowgate_vqav2: {len(ids)} questions chosen by random.seed({PAPER_SEED}) sampling of {len(ds)} rows; "
        f"question_id sha1 {ids_digest(ids)}; first five {ids[:5]}"
    )
    return subset


def caption_docs(ds: datasets.Dataset, refs: str, image_id: str, first: int | None = None) -> datasets.Dataset:
    """Normalised caption documents (see module doc) from ``ds``'s ``refs``/``image_id`` columns; ``first``
    keeps the first rows (the paper's subsets), refusing a copy that has fewer. Java is checked here, before
    any caption is generated (see ``java``)."""
    java.require_java("this narrowgate caption task")
    if first is not None:
        if len(ds) < first:
            raise ValueError(f"the paper's subset is the first {first} rows, but this copy has only {len(ds)}")
        ds = ds.select(range(first))
    ds = ds.select_columns(["image", refs, image_id])
    ds = ds.rename_columns({old: new for old, new in ((refs, "refs"), (image_id, "image_id")) if old != new})
    key = metrics.register_corpus(list(ds["refs"]))
    return ds.add_column(CORPUS_COLUMN, [key] * len(ds))


def coco_karpathy(first: int | None) -> datasets.Dataset:
    """Karpathy test rows (authors' order and raw references) with their images from COCO 2014 val."""
    rows = load_source(COCO_KARPATHY_TEST)
    if first is not None:
        if len(rows) < first:
            raise ValueError(
                f"the paper's COCO subset is the first {first} Karpathy test images, but this copy has {len(rows)}"
            )
        rows = rows.select(range(first))
    images = load_source(COCO2014_VAL_IMAGES)
    # lmms-lab/COCO-Caption names each image by its file ("COCO_val2014_000000391895.jpg"), as lmms-eval reads it.
    position = {int(name.rsplit("_", 1)[-1].split(".")[0]): i for i, name in enumerate(images["question_id"])}
    coco_ids = [int(i) for i in rows["cocoid"]]
    missing = [i for i in coco_ids if i not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} Karpathy test images are not in {COCO2014_VAL_IMAGES.hub_id} split "
            f"{COCO2014_VAL_IMAGES.split!r} (first COCO ids: {missing[:5]})"
        )
    docs = images.select([position[i] for i in coco_ids]).select_columns(["image"])
    docs = docs.add_column("cocoid", coco_ids).add_column("sentences", [list(s) for s in rows["sentences"]])
    return caption_docs(docs, refs="sentences", image_id="cocoid")


@documents("narrowgate_vqav2", "question_id")
def vqav2_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return select_paper_vqav2(load_source(VQAV2_VALIDATION))


@documents("narrowgate_vqav2_full", "question_id")
def vqav2_full_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return load_source(VQAV2_VALIDATION)


# The *_instruction tasks ask the same questions in the authors' instruction mode (docs/protocol.md §4); each
# task has its own hook, so that its documents are recorded under its name.
@documents("narrowgate_vqav2_instruction", "question_id")
def vqav2_instruction_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
    return vqav2_docs.__wrapped__(placeholder)


@documents("narrowgate_vqav2_full_instruction", "question_id")
def vqav2_full_instruction_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
    return vqav2_full_docs.__wrapped__(placeholder)


@documents("narrowgate_coco_cap", "image_id")
def coco_cap_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return coco_karpathy(first=PAPER_N)


@documents("narrowgate_coco_cap_full", "image_id")
def coco_cap_full_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return coco_karpathy(first=None)


@documents("narrowgate_flickr30k", "image_id")
def flickr30k_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return caption_docs(load_source(FLICKR30K_TEST), refs="caption", image_id="img_id", first=PAPER_N)


@documents("narrowgate_flickr30k_full", "image_id")
def flickr30k_full_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return caption_docs(load_source(FLICKR30K_TEST), refs="caption", image_id="img_id")


@documents("narrowgate_smoke_vqa", "question_id")
def smoke_vqa_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return load_packaged("vqa")


@documents("narrowgate_smoke_vqa_instruction", "question_id")
def smoke_vqa_instruction_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
    return smoke_vqa_docs.__wrapped__(placeholder)


@documents("narrowgate_smoke_caption", "image_id")
def smoke_caption_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    # The smoke captions share nlphuji/flickr30k's schema, so they take Flickr's path.
    return caption_docs(load_packaged("caption"), refs="caption", image_id="img_id")


@documents("narrowgate_scenes_single_vqa", "question_id")
def scenes_single_vqa_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return load_packaged("single", folder="scenes")


@documents("narrowgate_scenes_aggregation_vqa", "question_id")
def scenes_aggregation_vqa_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    return load_packaged("aggregation", folder="scenes")


# ------------------------------------------------------------------------------------- prompts and scores


def doc_to_visual(doc: dict) -> list:
    image = doc.get("image")
    if image is None:
        name = "question_id" if "question_id" in doc else "image_id"
        raise ValueError(f"document with {name}={doc.get(name)!r} has no image")
    return [image.convert("RGB")]


def vqa_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The VQA request in the model's prompt variant (lmms-eval passes the task's entry for the model)."""
    return prompts.model_request(prompts.vqa_request(doc["question"]), lmms_eval_specific_kwargs)


def vqa_instruction_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The instruction-mode VQA request in the model's prompt variant (none of the variants adds a cue)."""
    return prompts.model_request(prompts.vqa_instruction_request(doc["question"]), lmms_eval_specific_kwargs)


def caption_doc_to_text(doc: dict) -> str:
    return prompts.CAPTION_REQUEST


# lmms-eval's `--baseline FILE` paired test reads the current run's per-sample `score_key` field (the
# task YAMLs name vqa_accuracy / cider_paper) but takes the baseline file's score from its first field
# whose name contains "score"; without one it falls back to exact match. So each sample also carries its
# task's per-sample score as "score" (not in metric_list: lmms-eval aggregates nothing from it).
PAIRED_SCORE = "score"


def vqa_process_results(doc: dict, results: Sequence[str]) -> dict[str, float]:
    accuracy = metrics.vqa_accuracy(doc, prompts.first_line(results[0]))
    return {"vqa_accuracy": accuracy, PAIRED_SCORE: accuracy}


def caption_process_results(doc: dict, results: Sequence[str]) -> dict:
    pred = prompts.first_line(results[0])
    refs = list(doc["refs"])
    cider = metrics.cider_d(pred, refs, metrics.registered_corpus(doc[CORPUS_COLUMN]))
    scores: dict = {"cider_paper": cider, PAIRED_SCORE: cider}
    if not java.ptb_skipped():
        item = {"pred": pred, "refs": refs}
        scores.update({name: item for name in metrics.PTB_METRICS})
    return scores


def _ptb(name: str, items: list[dict]) -> float:
    # An exception here would make lmms-eval drop the whole run, generated samples included.
    try:
        return metrics.coco_caption_scores([i["pred"] for i in items], [i["refs"] for i in items])[name]
    except Exception as error:
        logger.error(
            f"{name} failed, reported as NaN (samples and cider_paper are kept): {type(error).__name__}: {error}. "
            f"{java.SKIP_ENV}=1 skips the *_ptb metrics."
        )
        return math.nan


def cider_ptb(items: list[dict]) -> float:
    return _ptb("cider_ptb", items)


def bleu4_ptb(items: list[dict]) -> float:
    return _ptb("bleu4_ptb", items)


def meteor_ptb(items: list[dict]) -> float:
    return _ptb("meteor_ptb", items)


def rouge_l_ptb(items: list[dict]) -> float:
    return _ptb("rouge_l_ptb", items)
