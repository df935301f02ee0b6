"""Scores of narrowgate's tasks: VQA accuracy, the authors' CIDEr-D (``cider_paper``), the standard
pycocoevalcap pipeline, and both smoke tasks end to end through lmms-eval's evaluator (a scripted lmms
model supplies the continuations; the real model wrappers are tested with tiny checkpoints elsewhere)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from narrowgate_tasks import metrics, utils
from narrowgate_tasks.prompts import CAPTION_REQUEST, completion_suffix, first_line, vqa_request


def vqa_doc(*answers: str) -> dict:
    return {
        "question_id": 7,
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i} for i, a in enumerate(answers, 1)],
    }


# --------------------------------------------------------------------------------------------------- VQA

# Leave-one-out by hand: with m of the 10 annotators matching, the m subsets that leave a match out hold
# m - 1 matches, the other 10 - m hold m; each subset scores min(1, matches / 3).
LEAVE_ONE_OUT = [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]


@pytest.mark.parametrize("m, expected", LEAVE_ONE_OUT)
def test_vqa_leave_one_out_average(m, expected):
    assert metrics.vqa_accuracy(vqa_doc(*(["yes"] * m + ["no"] * (10 - m))), "yes") == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("two", ["2"] * 10, 1.0),  # number words become digits ...
        ("2", ["two"] * 10, 1.0),  # ... on both sides
        ("Two.", ["2"] * 10, 1.0),  # case and the final period
        ("a dog", ["dog"] * 10, 1.0),  # articles dropped
        ("the dog", ["dog"] * 10, 1.0),
        ("an apple", ["apple"] * 10, 1.0),
        ("yes!", ["yes"] * 10, 1.0),  # punctuation
        ("hot-dog", ["hot dog"] * 10, 1.0),
        ("10,000", ["10000"] * 10, 1.0),
        ("dont", ["don't"] * 10, 1.0),  # contractions restored
        ("isnt", ["isn't"] * 10, 1.0),
        ("YES", ["yes"] * 10, 1.0),
        ("yes, it is", ["yes"] * 10, 0.0),  # the whole answer must match: verbose answers score 0
        ("two dogs", ["2 dogs"] * 2 + ["two dogs"] * 2 + ["cats"] * 6, 1.0),  # 4 matches after normalisation
        ("2 dogs", ["2 dogs"] + ["two"] * 9, 0.3),
    ],
)
def test_vqa_answer_normalisation(pred, answers, expected):
    assert metrics.vqa_accuracy(vqa_doc(*answers), pred) == pytest.approx(expected)


def test_vqa_scores_the_first_nonempty_line_of_the_continuation():
    doc = vqa_doc(*(["red"] * 10))
    assert utils.vqa_process_results(doc, ["\n  Red.\nQuestion: what colour is it?"]) == {
        "vqa_accuracy": 1.0,
        "score": 1.0,
    }
    assert utils.vqa_process_results(doc, ["it is red\nred"]) == {"vqa_accuracy": 0.0, "score": 0.0}
    assert utils.vqa_process_results(doc, ["\n\n"]) == {"vqa_accuracy": 0.0, "score": 0.0}
    assert doc == vqa_doc(*(["red"] * 10))  # lmms-eval normalises answers in place; the document is untouched


def test_vqa_rejects_answers_without_distinct_ids():
    doc = {"question_id": 3, "answers": [{"answer": "yes"}] * 10}
    with pytest.raises(ValueError, match="question 3.*answer_id"):
        metrics.vqa_accuracy(doc, "yes")


def test_prompt_contract():
    request = vqa_request("What is it?")
    assert request == "What is it?\nAnswer the question using a single word or phrase."
    assert completion_suffix(request) == " Answer:"
    assert completion_suffix(CAPTION_REQUEST) == ""
    assert first_line("  \n\n  A red circle.  \nMore.") == "A red circle."
    assert first_line("") == first_line(" \n ") == ""


# ----------------------------------------------------------------------------------------------- CIDEr-D


def reference_cider_d(candidate: str, refs: list[str], all_refs: list[list[str]]) -> float:
    """CIDEr-D from its definition (Vedantam et al. 2015), written out directly; length measured as
    pycocoevalcap measures it (the number of bigrams) so that the scores are the authors'."""

    def grams(text: str, n: int) -> Counter:
        words = text.split()
        return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))

    n_images = len(all_refs)
    total = 0.0
    for n in range(1, 5):
        df = Counter(g for image_refs in all_refs for g in set().union(*(grams(r, n) for r in image_refs)))

        def tfidf(text: str, n: int = n, df: Counter = df) -> dict:
            return {g: tf * (math.log(n_images) - math.log(max(1, df[g]))) for g, tf in grams(text, n).items()}

        c = tfidf(candidate)
        for ref in refs:
            s = tfidf(ref)
            norms = math.sqrt(sum(v * v for v in c.values())) * math.sqrt(sum(v * v for v in s.values()))
            dot = sum(min(v, s.get(g, 0.0)) * s.get(g, 0.0) for g, v in c.items())
            delta = sum(grams(candidate, 2).values()) - sum(grams(ref, 2).values())
            total += (dot / norms if norms else 0.0) * math.exp(-(delta**2) / (2 * 6.0**2)) / len(refs)
    return 10.0 * total / 4


CAPTION_SETS = [
    ["A man rides a horse on the beach.", "a man riding a horse", "A person on a horse near the sea."],
    ["Two dogs play in the snow.", "two dogs playing in snow", "Dogs run through the snow.", "A pair of dogs in snow."],
    ["A red car parked on a street.", "a red car on the road", "The red car is parked."],
    ["A plate of food with broccoli.", "food on a white plate", "Broccoli and rice on a plate."],
]
CANDIDATES = [
    "A man rides a horse on the beach.",  # a reference, verbatim
    "two dogs playing in the snow",
    "A RED CAR parked on a street",  # case and punctuation matter on raw text
    "",
]


def test_cider_paper_equals_an_independent_implementation():
    corpus = metrics.CiderCorpus.from_refs(CAPTION_SETS)
    for candidate, refs in zip(CANDIDATES, CAPTION_SETS):
        assert metrics.cider_d(candidate, refs, corpus) == pytest.approx(
            reference_cider_d(candidate, refs, CAPTION_SETS), abs=1e-12
        )
    # Raw text: "A man ..." is not "a man ...", and a trailing period is part of the last word.
    assert metrics.cider_d("a man rides a horse on the beach", CAPTION_SETS[0], corpus) != pytest.approx(
        metrics.cider_d(CANDIDATES[0], CAPTION_SETS[0], corpus)
    )
    assert metrics.cider_d(CAPTION_SETS[1][0], [CAPTION_SETS[1][0]] * 2, corpus) == pytest.approx(10.0)


def test_cider_paper_equals_pycocoevalcap_on_raw_text():
    """The authors scored with pycocoevalcap's CiderScorer on raw captions: same per-image values and mean."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    scorer = CiderScorer(n=4, sigma=6.0)
    for candidate, refs in zip(CANDIDATES, CAPTION_SETS):
        scorer += (candidate, refs)
    mean, per_image = scorer.compute_score()
    corpus = metrics.CiderCorpus.from_refs(CAPTION_SETS)
    ours = [metrics.cider_d(c, r, corpus) for c, r in zip(CANDIDATES, CAPTION_SETS)]
    assert ours == pytest.approx(list(per_image), abs=1e-12)
    assert sum(ours) / len(ours) == pytest.approx(mean, abs=1e-12)


def test_caption_results_need_the_tasks_corpus():
    with pytest.raises(KeyError, match="process_docs"):
        utils.caption_process_results({"refs": ["a cat"], "cider_corpus": "nope"}, ["a cat"])


# ------------------------------------------------------------------------------ standard pipeline (Java)


def test_ptb_pipeline_equals_lmms_eval_coco_pipeline(tmp_path, monkeypatch):
    """Same numbers as lmms-eval's own COCO caption aggregation (PTB tokenizer + pycocoevalcap)."""
    from lmms_eval.tasks.coco_cap.utils import coco_bleu4, coco_cider, coco_meteor, coco_rougel

    monkeypatch.chdir(tmp_path)  # lmms-eval writes a submission file into the working directory
    preds = ["A man riding a horse on a beach", "Two dogs play in snow.", "", "broccoli on a plate"]
    items = [
        {"answer": refs, "pred": p, "image_id": i, "id": i} for i, (p, refs) in enumerate(zip(preds, CAPTION_SETS))
    ]
    ours = metrics.coco_caption_scores(preds, CAPTION_SETS)
    assert ours["cider_ptb"] == pytest.approx(coco_cider(items, None), abs=1e-9)
    assert ours["bleu4_ptb"] == pytest.approx(coco_bleu4(items, None), abs=1e-9)
    assert ours["meteor_ptb"] == pytest.approx(coco_meteor(items, None), abs=1e-9)
    assert ours["rouge_l_ptb"] == pytest.approx(coco_rougel(items, None), abs=1e-9)
    assert 0 < ours["cider_ptb"] and 0 < ours["meteor_ptb"] < 1


# ------------------------------------------------------------------------- smoke tasks through lmms-eval


def scripted_model(answer):
    """An lmms-eval simple model that answers ``answer(doc)`` for each request's document."""
    from lmms_eval.api.model import lmms

    class Scripted(lmms):
        is_simple = True

        def __init__(self) -> None:
            super().__init__()
            self.requests: list[tuple] = []

        def generate_until(self, requests):
            outputs = []
            for request in requests:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                self.requests.append((task, context, gen_kwargs, doc_to_visual(doc)))
                outputs.append(answer(doc))
            return outputs

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    return Scripted()


def evaluate(model, tasks: list[str]) -> dict:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(utils.__file__).rsplit("/", 1)[0], include_defaults=False)
    return simple_evaluate(model=model, tasks=tasks, task_manager=manager, log_samples=True, bootstrap_iters=0)


def loo_accuracy(answers: list[str], pred: str) -> float:
    """The official leave-one-out rule for already-normalised answers (smoke answers are plain words)."""
    return sum(min(1.0, (answers[:i] + answers[i + 1 :]).count(pred) / 3) for i in range(len(answers))) / len(answers)


def test_smoke_vqa_end_to_end():
    def answer(doc):  # even question ids: the majority answer, dressed up; odd: a minority answer, if any
        words = [a["answer"] for a in doc["answers"]]
        if doc["question_id"] % 2000 == 0:
            return f"\n {doc['multiple_choice_answer'].capitalize()}.\nQuestion: and the shape?"
        return min(words, key=words.count)

    model = scripted_model(answer)
    out = evaluate(model, ["narrowgate_smoke_vqa"])
    samples = out["samples"]["narrowgate_smoke_vqa"]
    assert len(samples) == 32
    expected = []
    for sample in samples:
        words = [a["answer"] for a in sample["doc"]["answers"]]
        pred = first_line(sample["resps"][0][0]).rstrip(".").lower()
        expected.append(loo_accuracy(words, pred))
        assert sample["vqa_accuracy"] == pytest.approx(expected[-1])
    assert 0 < min(expected) < 1 and max(expected) == 1  # partial credit happened, full credit too
    assert out["results"]["narrowgate_smoke_vqa"]["vqa_accuracy,none"] == pytest.approx(sum(expected) / 32)
    _, context, gen_kwargs, visuals = model.requests[0]
    assert context.endswith("\nAnswer the question using a single word or phrase.")
    assert gen_kwargs["max_new_tokens"] == 20 and gen_kwargs["until"] == [] and gen_kwargs["do_sample"] is False
    assert [v.mode for v in visuals] == ["RGB"]


def test_smoke_caption_end_to_end():
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    model = scripted_model(lambda doc: "\n\n" + doc["refs"][int(doc["image_id"]) % 5] + "\nMore text.")
    out = evaluate(model, ["narrowgate_smoke_caption"])
    samples = out["samples"]["narrowgate_smoke_caption"]
    results = out["results"]["narrowgate_smoke_caption"]
    assert len(samples) == 32

    scorer = CiderScorer(n=4, sigma=6.0)  # the authors' computation over the whole task
    for sample in samples:
        refs = sample["doc"]["refs"]
        pred = refs[int(sample["doc"]["image_id"]) % 5]
        scorer += (pred, refs)
        assert sample["cider_ptb"] == {"pred": pred, "refs": refs}
    mean, per_image = scorer.compute_score()
    assert [s["cider_paper"] for s in samples] == pytest.approx(list(per_image), abs=1e-9)
    assert results["cider_paper,none"] == pytest.approx(mean, abs=1e-9)

    preds = [s["cider_ptb"]["pred"] for s in samples]
    standard = metrics.coco_caption_scores(preds, [s["doc"]["refs"] for s in samples])
    for name in metrics.PTB_METRICS:
        assert results[f"{name},none"] == pytest.approx(standard[name])
    assert results["meteor_ptb,none"] > 0.5 and results["bleu4_ptb,none"] > 0.5
    _, context, gen_kwargs, _ = model.requests[0]
    assert context == CAPTION_REQUEST and gen_kwargs["max_new_tokens"] == 60 and gen_kwargs["until"] == []
