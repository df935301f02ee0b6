"""The scores of narrowgate's tasks; lmms-eval glue lives in ``utils``.

- ``vqa_accuracy``: lmms-eval's own VQAv2 scoring (EvalAI answer normalisation: punctuation, number
  words to digits, articles, contractions; mean over the 10 leave-one-out subsets of
  min(1, matches / 3)), called, not copied.
- ``cider_d`` with a ``CiderCorpus``: the authors' captioning score (``cider_paper``). CIDEr-D exactly as
  pycocoevalcap's ``CiderScorer`` computes it per image (1-4-grams, tf-idf with the idf taken from the
  reference corpus, clipped similarity, Gaussian length penalty sigma = 6, x10), but on the raw text
  split at whitespace: no PTB tokenizer, no lower-casing, punctuation stays attached. The authors ran
  pycocoevalcap's scorer on raw text with the evaluated references as the idf corpus; per image it
  depends on the corpus only through the document frequencies and log(#images), which ``CiderCorpus``
  holds, so each sample gets its own score. Scale: pycocoevalcap's, where a caption equal to every
  reference scores 10, not divided by 10: the paper says "divided by 10", but the published values
  (LLaVA .98 COCO, .70 Flickr30k) would then stand for 9.8 and 7.0 here, near-verbatim agreement with
  all five references; on pycocoevalcap's own scale they are ordinary scores (docs/protocol.md §7).
- ``coco_caption_scores``: the standard pipeline lmms-eval's COCO/Flickr tasks run (PTB tokenizer,
  then BLEU-4, METEOR, ROUGE-L, CIDEr from pycocoevalcap; Java). Corpus-level only: the tokenizer is
  one Java process per call, so it runs once per task at aggregation time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache

from pycocoevalcap.cider.cider_scorer import precook

CIDER_N = 4
CIDER_SIGMA = 6.0


def vqa_accuracy(doc: Mapping, answer: str) -> float:
    """VQA accuracy of ``answer`` against ``doc["answers"]`` (ten annotator dicts), scored by lmms-eval."""
    from lmms_eval.tasks.vqav2.utils import vqav2_process_results

    answers = doc.get("answers")
    ids = [a.get("answer_id") for a in answers or []]
    if not answers or None in ids or len(set(ids)) != len(ids):
        # lmms-eval drops a left-out answer by dict equality, so identical dicts would be dropped together.
        raise ValueError(
            f"question {doc.get('question_id')!r}: expected 'answers' as a list of dicts with distinct "
            f"'answer_id' values (VQAv2 schema), got {answers!r}"
        )
    scored = vqav2_process_results({"question_id": doc.get("question_id"), "answers": copy.deepcopy(answers)}, [answer])
    return float(scored["exact_match"])


@dataclass(frozen=True)
class CiderCorpus:
    """What CIDEr-D needs from the reference corpus: each n-gram's document frequency (the number of
    images whose references contain it) and log(number of images)."""

    document_frequency: Mapping[tuple[str, ...], int]
    log_n_images: float

    @classmethod
    def from_refs(cls, refs_per_image: Sequence[Sequence[str]]) -> CiderCorpus:
        if not refs_per_image or any(not refs for refs in refs_per_image):
            raise ValueError("a CIDEr corpus needs at least one image, and every image at least one reference")
        frequency: Counter = Counter()
        for refs in refs_per_image:
            frequency.update({ngram for ref in refs for ngram in precook(ref, CIDER_N)})
        return cls(dict(frequency), math.log(len(refs_per_image)))


def cider_d(hypothesis: str, refs: Sequence[str], corpus: CiderCorpus) -> float:
    """CIDEr-D of one caption against its references (pycocoevalcap's per-image value; see module doc)."""

    def vectors(text: str) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(CIDER_N)]
        length = 0
        for ngram, tf in precook(text, CIDER_N).items():
            df = corpus.document_frequency.get(ngram, 0)
            vec[len(ngram) - 1][ngram] = tf * (corpus.log_n_images - math.log(max(1.0, df)))
            if len(ngram) == 2:  # pycocoevalcap measures length in bigrams; kept for identical scores
                length += tf
        return vec, [math.sqrt(sum(v * v for v in grams.values())) for grams in vec], length

    vec_h, norm_h, length_h = vectors(hypothesis)
    total = 0.0
    for ref in refs:
        vec_r, norm_r, length_r = vectors(ref)
        penalty = math.exp(-((length_h - length_r) ** 2) / (2 * CIDER_SIGMA**2))
        for n in range(CIDER_N):
            dot = sum(min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, v in vec_h[n].items())
            if norm_h[n] and norm_r[n]:
                dot /= norm_h[n] * norm_r[n]
            total += dot * penalty
    return 10.0 * total / (CIDER_N * len(refs))


_CORPORA: dict[str, CiderCorpus] = {}


def register_corpus(refs_per_image: Sequence[Sequence[str]]) -> str:
    """Build (once) and remember the corpus of these references; returns the key ``registered_corpus``
    takes. Task documents carry the key, so per-sample scores use the whole task's references."""
    key = hashlib.sha1(json.dumps([list(refs) for refs in refs_per_image]).encode()).hexdigest()
    if key not in _CORPORA:
        _CORPORA[key] = CiderCorpus.from_refs(refs_per_image)
    return key


def registered_corpus(key: str) -> CiderCorpus:
    if key not in _CORPORA:
        raise KeyError(
            f"no CIDEr corpus {key!r} in this process: caption documents must come from their task's "
            "process_docs (narrowgate_tasks.utils), which registers the task's references"
        )
    return _CORPORA[key]


PTB_METRICS = ("cider_ptb", "bleu4_ptb", "meteor_ptb", "rouge_l_ptb")


def coco_caption_scores(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-4, METEOR, ROUGE-L and CIDEr of ``preds`` by the standard pycocoevalcap pipeline."""
    if len(preds) != len(refs) or not preds:
        raise ValueError(f"need one prediction per reference set and at least one, got {len(preds)} and {len(refs)}")
    return dict(_coco_caption_scores(tuple(preds), tuple(tuple(r) for r in refs)))


@contextmanager
def _stopped_after(meteor):
    """pycocoevalcap's METEOR, its Java process stopped on the way out. Its ``__del__`` waits on a lock
    that an interrupted ``compute_score`` still holds: after Ctrl-C the process would hang there."""
    try:
        yield meteor
    finally:
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
        with suppress(OSError):  # a pipe to a killed process; __del__ closes it again
            meteor.meteor_p.stdin.close()
        if meteor.lock.locked():
            meteor.lock.release()


@lru_cache(maxsize=4)  # lmms-eval aggregates each of the four metrics separately over the same items
def _coco_caption_scores(preds: tuple[str, ...], refs: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, float], ...]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    # Keys are positions, not image ids: an image listed twice stays two samples. A lone "." stands in
    # for an empty caption: the tokenizer drops it (so it still scores as empty) but keeps the line,
    # where a truly empty last line would vanish and misalign the tokenizer's output.
    gts = tokenizer.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": p if p.strip() else "."}] for i, p in enumerate(preds)})
    # The tokenizer ignores Java's exit status: a broken Java returns fewer lines, silently.
    for what, given, tokenized in (("references", refs, gts), ("captions", [[p] for p in preds], res)):
        n_given, n_back = sum(map(len, given)), sum(map(len, tokenized.values()))
        if n_back != n_given:
            raise RuntimeError(
                f"the PTB tokenizer (Java) returned {n_back} of {n_given} {what}; check `java -version`"
            )
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    with _stopped_after(Meteor()) as scorer:
        meteor, _ = scorer.compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return (
        ("cider_ptb", float(cider)),
        ("bleu4_ptb", float(bleu[3])),
        ("meteor_ptb", float(meteor)),
        ("rouge_l_ptb", float(rouge)),
    )
