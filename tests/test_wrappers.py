"""lmms-eval model wrappers on the tiny checkpoints of every family, end to end.

Through the real ``lmms_eval`` console script (one run per family, all in one ``--config`` call): every family's
``image_ablated`` model writes results and samples, and every sample equals the intervention engine's
own ``generate`` on the prompt and example key recorded in that sample's audit. In process
(``simple_evaluate``, same weights, conditions switched with ``set_condition``): every condition equals
the engine, batch size does not change outputs, loglikelihood runs under the condition. Bad input
fails loudly, naming the valid names or the document.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
import torch

from interventions import CONDITIONS, FAMILIES, family_spec, find_layouts, intervene, make_condition
from model_wrappers.registry import family_names, model_class, model_names
from narrowgate.core.evaluation import tasks_dir
from narrowgate.tiny import TINY_FAMILIES

SMOKE = "narrowgate_smoke_vqa"
LIMIT = 4
BIN = Path(sys.executable).parent
# CLI runs: one thread each, as in the test process (torchrun sets the same itself).
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


# ------------------------------------------------------------------------------------------- helpers


def run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=False, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def read_samples(output: Path, task: str) -> dict[int, dict]:
    (path,) = output.glob(f"*/*_samples_{task}.jsonl")
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    return {sample["doc_id"]: sample for sample in samples}


def raw_response(sample: dict) -> str:
    """The model's continuation, from a samples file (``resps`` kept only when a filter changed it) or
    from an in-memory sample (nested one list per request and one per repeat)."""
    value = sample["resps"] if "resps" in sample else sample["filtered_resps"]
    while isinstance(value, list):
        (value,) = value
    return value


@cache
def smoke_task():
    from lmms_eval.tasks import TaskManager, get_task_dict

    return get_task_dict([SMOKE], TaskManager("ERROR", include_path=tasks_dir(), include_defaults=False))[SMOKE]


class Engine:
    """The intervention engine's own generate: plain transformers model, one example at a time."""

    def __init__(self, family: str, pretrained: Path):
        import transformers

        spec = family_spec(family)
        self.model = getattr(transformers, spec.model_class).from_pretrained(pretrained, dtype=torch.float32).eval()
        self.processor = transformers.AutoProcessor.from_pretrained(pretrained)
        self.ids = spec.token_ids(self.processor.tokenizer)
        self.processor_kwargs = dict(model_class(family).prompt_format.processor_kwargs)

    def generate(self, audit: dict, images: list, max_new_tokens: int) -> str:
        inputs = self.processor(text=[audit["prompt"]], images=images, return_tensors="pt", **self.processor_kwargs)
        (layout,) = find_layouts(inputs["input_ids"], inputs["attention_mask"], self.ids)
        # Same example key (it seeds random choices); the logged positions are those of the padded row.
        layout = dataclasses.replace(layout, key=audit["layout"]["key"])
        logged = audit["layout"]
        shift = logged["first"]
        assert [[s["start"], s["image"], s["gate"]] for s in layout.to_dict()["spans"]] == [
            [[p - shift for p in s["start"]], [p - shift for p in s["image"]], [p - shift for p in s["gate"]]]
            for s in logged["spans"]
        ], "the logged image/gate positions are not where the prompt puts them"
        condition = make_condition(**audit["condition"])
        with torch.inference_mode(), intervene(self.model, condition, [layout]):
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                suppress_tokens=list(self.ids.image),
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
        return self.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def engine(tiny_dir):
    engines: dict[str, Engine] = {}

    def get(family: str) -> Engine:
        if family not in engines:
            engines[family] = Engine(family, tiny_dir(family))
        return engines[family]

    return get


def assert_equals_engine(engine: Engine, samples: dict[int, dict], condition: str, limit: int = LIMIT) -> None:
    task = smoke_task()
    max_new_tokens = task.config.generation_kwargs["max_new_tokens"]
    assert sorted(samples) == list(range(limit))
    for doc_id, sample in samples.items():
        audit = sample["narrowgate"]
        assert audit["condition"]["name"] == condition
        images = task.doc_to_visual(task.eval_docs[doc_id])
        expected = engine.generate(audit, images, max_new_tokens)
        assert raw_response(sample) == expected, (
            f"doc {doc_id}: the wrapper's output differs from the engine's generate"
        )


def evaluate(
    lm, task: str = SMOKE, include_path: str | list[str] | None = None, limit: int | None = LIMIT, model_name: str | None = None
) -> dict:
    """In-process lmms-eval run of ``lm`` (lmms-eval name ``model_name``, default ``lm.model_name``); returns
    {doc_id: sample} with the audit lifted as in the samples file."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from model_wrappers.audit import lift_audits

    # the model's prompt variants of the task, as lmms-eval's CLI picks them (by the --model name)
    manager = TaskManager("ERROR", include_path=include_path or tasks_dir(), include_defaults=False, model_name=model_name or lm.model_name)
    results = evaluator.simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=True, verbosity="ERROR"
    )
    assert task in results["results"]
    return {sample["doc_id"]: sample for sample in lift_audits(results["samples"][task])}


def fixture_tasks(folder: Path) -> Path:
    """Two tasks on 4 coloured-disk documents (docs 0 and 1 ask the same question of different images):
    ``ngw_fixture_mc`` (multiple choice, i.e. loglikelihood) and ``ngw_fixture_noimage`` (generation,
    doc 2 has no image)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        {"question": "what color is the circle?", "colour": [220, 30, 30], "answer": 0, "has_image": True},
        {"question": "what color is the circle?", "colour": [40, 90, 230], "answer": 1, "has_image": True},
        {"question": "what color is the circle?", "colour": [30, 200, 60], "answer": 2, "has_image": False},
        {"question": "is there a circle?", "colour": [240, 200, 20], "answer": 3, "has_image": True},
    ]
    (folder / "ngw_fixture.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (folder / "ngw_fixture_utils.py").write_text(
        textwrap.dedent(
            """
            from PIL import Image, ImageDraw

            def doc_to_visual(doc):
                if not doc["has_image"]:
                    return []
                image = Image.new("RGB", (32, 32), (255, 255, 255))
                ImageDraw.Draw(image).ellipse((6, 6, 26, 26), fill=tuple(doc["colour"]))
                return [image]

            def doc_to_text(doc):
                return doc["question"]

            def process_results(doc, results):
                return {"nonempty": float(bool(results[0].strip()))}
            """
        )
    )
    common = """
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: ngw_fixture.jsonl
        test_split: test
        doc_to_visual: !function ngw_fixture_utils.doc_to_visual
        doc_to_text: !function ngw_fixture_utils.doc_to_text
        """
    (folder / "ngw_fixture_mc.yaml").write_text(
        textwrap.dedent(common)
        + textwrap.dedent(
            """
            task: ngw_fixture_mc
            output_type: multiple_choice
            doc_to_choice: ["red", "blue", "green", "yellow"]
            doc_to_target: answer
            metric_list:
              - metric: acc
            """
        )
    )
    (folder / "ngw_fixture_noimage.yaml").write_text(
        textwrap.dedent(common)
        + textwrap.dedent(
            """
            task: ngw_fixture_noimage
            output_type: generate_until
            doc_to_target: answer
            generation_kwargs:
              max_new_tokens: 3
            process_results: !function ngw_fixture_utils.process_results
            metric_list:
              - metric: nonempty
                aggregation: mean
                higher_is_better: true
            """
        )
    )
    return folder


# --------------------------------------------------------------------------------- registration


def test_registry_covers_every_family_and_condition():
    assert family_names() == (*FAMILIES, "auto") and set(FAMILIES) == set(TINY_FAMILIES)
    assert set(model_names()) == {f"{family}_{condition}" for family in family_names() for condition in CONDITIONS}
    from lmms_eval.models import MODEL_REGISTRY_V2, get_model

    registered = set(MODEL_REGISTRY_V2.list_model_names())
    for family in FAMILIES:
        assert {f"{family}_{condition}" for condition in CONDITIONS} <= registered
    cls = get_model("pixtral_random_image_ablated")
    assert (cls.family, cls.registered_condition, cls.is_simple) == ("pixtral", "random_image_ablated", True)
    assert get_model("qwen2_vl_baseline").registered_condition == "baseline"


def test_registration_imports_nothing_heavy():
    code = (
        "import sys, model_wrappers, model_wrappers.registry as r; r.manifests(); "
        "heavy = [m for m in ('torch', 'transformers', 'interventions.layouts') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = run([sys.executable, "-c", code], cwd=Path.cwd(), timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_wrong_family_fails_before_any_weights_load(tiny_dir, tmp_path, monkeypatch):
    """A checkpoint of another family is refused from its config.json alone (the folders below hold nothing
    else, so loading weights would fail differently), naming the right model; for hub ids, from the cache."""
    import shutil

    import huggingface_hub

    def config_only(family: str):
        folder = tmp_path / f"{family}-config-only"
        folder.mkdir()
        shutil.copy(tiny_dir(family) / "config.json", folder)
        return folder

    chameleon = config_only("chameleon")
    with pytest.raises(ValueError, match=r"^llava_gate_ablated: pretrained=\S+ is not a llava checkpoint \(its config\.json: "
                       r"model_type 'chameleon', architectures \['ChameleonForConditionalGeneration'\]\); use --model chameleon_gate_ablated$"):
        model_class("llava_gate_ablated")(pretrained=str(chameleon))
    # Pixtral's checkpoints are llava ones with a pixtral tower: each family refuses the other's
    with pytest.raises(ValueError, match=r"not a llava checkpoint .* use --model pixtral_baseline$"):
        model_class("llava")(pretrained=str(config_only("pixtral")))
    with pytest.raises(ValueError, match=r"not a pixtral checkpoint .* use --model llava_gate_only$"):
        model_class("pixtral")(pretrained=str(config_only("llava")), condition="gate_only")
    # no declared family: the generic one
    with pytest.raises(ValueError, match=r"model_type 'mistral3'.* use --model auto_baseline \(the generic family\)"):
        model_class("emu3_baseline")(pretrained=str(config_only("mistral3")))
    # a hub id: only config.json is read, here from the offline cache
    revision = "0" * 40
    repo = tmp_path / "hub" / "models--facebook--chameleon-7b"
    (repo / "snapshots" / revision).mkdir(parents=True)
    shutil.copy(chameleon / "config.json", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match=r"pretrained=facebook/chameleon-7b is not a janus checkpoint .* use --model chameleon_image_ablated$"):
        model_class("janus_image_ablated")(pretrained="facebook/chameleon-7b")


def test_bad_model_args_fail_before_loading(tmp_path):
    missing = tmp_path / "no-checkpoint-here"  # every error below must come before from_pretrained
    with pytest.raises(ValueError, match="condition=image_ablated contradicts|runs condition 'gate_ablated'"):
        model_class("chameleon_gate_ablated")(pretrained=missing, condition="image_ablated")
    with pytest.raises(ValueError, match="valid conditions: baseline, gate_ablated, gate_only"):
        model_class("chameleon")(pretrained=missing, condition="gate_ablate")
    with pytest.raises(ValueError, match="unknown model_args colour; valid: pretrained, condition"):
        model_class("emu3")(pretrained=missing, colour="red")
    with pytest.raises(ValueError, match="unknown knockout 'soft'; valid: zero, mask"):
        model_class("llava_gate_only")(pretrained=missing, knockout="soft")
    with pytest.raises(ValueError, match="auto is not supported"):
        model_class("janus")(pretrained=missing, batch_size="auto")
    with pytest.raises(ValueError, match="unknown narrowgate model 'chameleon_gate_ablate'.*chameleon_gate_ablated"):
        model_class("chameleon_gate_ablate")


def test_launcher_reports_missing_results(tmp_path):
    """lmms-eval's CLI exits 0 whatever happened; the launcher checks for real results and files."""
    import argparse
    import time

    from narrowgate.launcher import missing_outputs

    started = time.time()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x_results.json").write_text("{}")
    (tmp_path / "model" / "x_samples_a.jsonl").write_text("")
    args = argparse.Namespace(tasks="a,b", output_path=str(tmp_path), log_samples=True)
    results = {"results": {"a": {}}, "configs": {"a": {}}}
    assert missing_outputs(args, results, started) == ["no results for task 'b'"]
    results = {"results": {"a": {}, "b": {}}, "configs": {"a": {}, "b": {}}}
    assert missing_outputs(args, results, started) == ["no samples written for task 'b' under " + str(tmp_path)]
    assert missing_outputs(args, None, started) == ["lmms-eval returned no results"]


# ------------------------------------------------------------------------- conditions, in process


@pytest.mark.parametrize("family", ["chameleon", "emu3"])
def test_every_condition_equals_the_engine_on_one_load(tiny_dir, engine, family):
    """The grid's contract: load once, switch conditions with set_condition, evaluate repeatedly."""
    import model_wrappers

    lm = model_wrappers.load_model(family, str(tiny_dir(family)), batch_size=2, k=3)
    weights = lm.model
    outputs = {}
    for name in CONDITIONS:
        flow = {"cut": "image>last+gate>text"} if "cut" in CONDITIONS[name].options else {}
        lm.set_condition(make_condition(name, k=3, layers="1" if name == "gate_only" else None, **flow))
        samples = evaluate(lm, limit=2)  # one batch of two prompts of different lengths: left padding
        assert lm.model is weights, "the weights were reloaded or dropped between runs"
        assert_equals_engine(engine(family), samples, name, limit=2)
        audits = [sample["narrowgate"] for sample in samples.values()]
        assert any(audit["layout"]["first"] > 0 for audit in audits), "no padded row"
        assert all(audit["model"] == family and audit["prompt"].count(lm.spec.placeholder) == 1 for audit in audits)
        outputs[name] = [raw_response(samples[d]) for d in sorted(samples)]
        if name == "gate_only":
            assert all(audit["layers"] == [1] for audit in audits)
        if name == "gate_ablated":
            for audit in audits:
                gate = audit["layout"]["spans"][0]["gate"]
                assert audit["cut"] == [{"first_query": 0, "keys": [[gate[0], gate[-1] + 1]]}]
                assert audit["knockout"].startswith("zero: post-softmax")
    assert len({tuple(texts) for texts in outputs.values()}) > 1, "no condition changed any output"


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_size_does_not_change_outputs(tiny_dir, family):
    """--batch_size 4 == --batch_size 1, with per-example random choices (padding must not move them)."""
    import model_wrappers

    lm = model_wrappers.load_model(family, str(tiny_dir(family)), condition="random_image_ablated", k=3)
    one = evaluate(lm)
    lm.batch_size = 4
    four = evaluate(lm)
    assert {d: raw_response(s) for d, s in four.items()} == {d: raw_response(s) for d, s in one.items()}
    assert any(s["narrowgate"]["layout"]["first"] > 0 for s in four.values()), "no padded row: the test proves nothing"

    def cut_in_unpadded_row(sample):
        first = sample["narrowgate"]["layout"]["first"]
        return [[[a - first, b - first] for a, b in cut["keys"]] for cut in sample["narrowgate"]["cut"]]

    assert {d: cut_in_unpadded_row(s) for d, s in four.items()} == {d: cut_in_unpadded_row(s) for d, s in one.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_loglikelihood_runs_under_the_condition(tiny_dir, tmp_path, family):
    """Multiple choice through lmms-eval: with image_ablated (mask semantics) two documents that ask the
    same question of different images get identical log-likelihoods; with baseline they do not. It must
    hold for every family: a tiny model's greedy text can be the same under every condition (Janus's
    is), its log-likelihoods cannot."""
    import model_wrappers

    folder = fixture_tasks(tmp_path / "tasks")
    lm = model_wrappers.load_model(family, str(tiny_dir(family)), condition="image_ablated", knockout="mask")

    def loglikelihoods():
        samples = evaluate(lm, "ngw_fixture_mc", include_path=str(folder), limit=2)
        assert all(len(sample["narrowgate"]) == 4 for sample in samples.values())  # one audit per choice
        return [[float(resp[0]) for resp in sample["filtered_resps"]] for _, sample in sorted(samples.items())]

    blocked = loglikelihoods()
    assert blocked[0] == pytest.approx(blocked[1], abs=1e-5)
    lm.set_condition(make_condition("baseline"))
    plain = loglikelihoods()
    assert max(abs(a - b) for a, b in zip(plain[0], plain[1])) > 1e-4, "the image does not matter even at baseline"
    assert plain[0] != pytest.approx(blocked[0], abs=1e-4)


def test_multi_round_is_not_supported(tiny_dir):
    import model_wrappers

    lm = model_wrappers.load_model("llava", str(tiny_dir("llava")))
    with pytest.raises(NotImplementedError, match="multi-round generation is not supported"):
        lm.generate_until_multi_round([])


# ------------------------------------------------------------------------------------- real CLI


@pytest.fixture(scope="module")
def cli_runs(tiny_dir, tmp_path_factory):
    """``lmms_eval --model <family>_image_ablated ... --limit 4 --log_samples`` for every family: one
    real ``lmms_eval`` process (``--config`` with one run per family), so the slow imports are paid once."""
    import yaml

    root = tmp_path_factory.mktemp("cli")
    runs = [
        {
            "model": f"{family}_image_ablated",
            "model_args": f"pretrained={tiny_dir(family)}",
            "tasks": SMOKE,
            "limit": LIMIT,
            "output_path": str(root / family),
            "log_samples": True,
        }
        for family in FAMILIES
    ]
    (root / "runs.yaml").write_text(yaml.safe_dump(runs))
    result = run([str(BIN / "lmms_eval"), "--config", str(root / "runs.yaml")], cwd=root, timeout=900)
    return {family: (result, root / family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_image_ablated_equals_the_engine(cli_runs, engine, family):
    result, output = cli_runs[family]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (results_file,) = output.glob("*/*_results.json")
    assert SMOKE in json.loads(results_file.read_text())["results"]
    samples = read_samples(output, SMOKE)
    assert_equals_engine(engine(family), samples, "image_ablated")
    for sample in samples.values():
        audit = sample["narrowgate"]
        span = audit["layout"]["spans"][0]
        assert audit["cut"] == [
            {"first_query": span["gate"][-1] + 1, "keys": [[(span["start"] or span["image"])[0], span["gate"][-1] + 1]]}
        ]


def test_two_processes_equal_one(cli_runs, tiny_dir, tmp_path):
    """torchrun --nproc_per_node 2 -m narrowgate.launcher (gloo on CPU), as the README says: the same
    per-sample outputs as one process."""
    output = tmp_path / "dp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "narrowgate.launcher",
        "--model", "chameleon_image_ablated",
        "--model_args", f"pretrained={tiny_dir('chameleon')}",
        "--tasks", SMOKE,
        "--limit", str(LIMIT),
        "--output_path", str(output),
        "--log_samples",
    ]  # fmt: skip
    result = run(command, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Running on rank 1" in result.stdout + result.stderr
    two = read_samples(output, SMOKE)
    one = read_samples(cli_runs["chameleon"][1], SMOKE)
    assert {d: raw_response(s) for d, s in two.items()} == {d: raw_response(s) for d, s in one.items()}
    assert {d: s["narrowgate"]["prompt"] for d, s in two.items()} == {
        d: s["narrowgate"]["prompt"] for d, s in one.items()
    }


def test_cli_bad_names_and_paths_fail_in_plain_words(tiny_dir, tmp_path):
    """Several runs in one CLI call (--config): each fails with its real cause, and lmms-eval's own
    models that start with a family name (llava_hf) reach lmms-eval instead of being refused."""
    import yaml

    pretrained = tiny_dir("chameleon")
    runs = [
        {"model": "chameleon_gate_ablate", "model_args": f"pretrained={pretrained}"},
        {"model": "chameleon_baseline", "model_args": f"pretrained={pretrained},condition=gate_ablate"},
        {"model": "chameleon", "model_args": f"pretrained={pretrained}"},
        {"model": "llava_hf", "model_args": f"pretrained={tmp_path / 'llava'}"},
        {"model": "chameleon_gate_only", "model_args": f"pretrained={tmp_path / 'no-checkpoint'}"},
        {"model": "chameleon_baseline", "model_args": f"pretrained={pretrained}", "tasks": "narrowgate_vqav2"},
    ]
    common = {"tasks": SMOKE, "limit": 1, "output_path": str(tmp_path / "out")}
    config = tmp_path / "runs.yaml"
    config.write_text(yaml.safe_dump([{**common, **r} for r in runs]))
    env = {**ENV, "NARROWGATE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [str(BIN / "lmms_eval"), "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    failed = [line for line in output.splitlines() if line.startswith("lmms_eval: FAILED: ")]
    assert result.returncode != 0
    for expected in (
        r"chameleon_gate_ablate .*unknown narrowgate model 'chameleon_gate_ablate'.*chameleon_gate_ablated",
        r"chameleon_baseline .*unknown condition 'gate_ablate'.*valid conditions: baseline, gate_ablated, gate_only",
        r"chameleon on .*unknown narrowgate model 'chameleon'; the baseline is chameleon_baseline",
        r"llava_hf on ",
        rf"chameleon_gate_only .*FileNotFoundError: pretrained=\S+: no checkpoint folder at {tmp_path}/no-checkpoint",
        r"chameleon_baseline on narrowgate_vqav2: DataMissingError: data the tasks need is missing",
    ):
        assert any(re.search(expected, line) for line in failed), output[-5000:]
    assert len(failed) == len(runs), failed
    assert f"NARROWGATE_DATA_DIR={tmp_path}/data but {tmp_path}/data/lmms-lab/VQAv2/validation does not exist" in output
    llava_hf = next(line for line in failed if "llava_hf" in line)
    assert "unknown narrowgate model" not in llava_hf  # lmms-eval's own model, its own error
    assert "RetryError" not in output.split("lmms_eval: FAILED")[-1]
    assert not list(tmp_path.glob("out/*/*_results.json"))


def test_cli_sample_without_image_fails_naming_the_document(tiny_dir, tmp_path):
    folder = fixture_tasks(tmp_path / "tasks")
    command = [
        str(BIN / "lmms_eval"), "--model", "janus_gate_ablated", "--model_args", f"pretrained={tiny_dir('janus')}",
        "--tasks", "ngw_fixture_noimage", "--include_path", str(folder), "--limit", "3",
        "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    result = run(command, cwd=tmp_path)
    assert result.returncode != 0
    message = "task 'ngw_fixture_noimage' doc_id 2: the sample has no image"
    assert message in result.stdout + result.stderr, result.stdout[-2000:] + result.stderr[-2000:]
    assert not list(tmp_path.glob("out/*/*_results.json"))
