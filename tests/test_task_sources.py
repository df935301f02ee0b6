"""The results json names each narrowgate task's real data source, not the YAML's placeholder."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from narrowgate_tasks import sources, utils
from narrowgate_tasks.provenance import SOURCE_KEY, ids_digest

TASK_DIR = str(Path(utils.__file__).parent)


def results_json(tmp_path: Path, names: list[str]) -> dict:
    """Load ``names`` through lmms-eval and write a results json with lmms-eval's own tracker."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
    from lmms_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict(names, TaskManager(include_path=TASK_DIR, include_defaults=False))
    configs = {name: dict(task.dump_config()) for name, task in tasks.items()}
    configs["someone_elses_task"] = {"dataset_path": "json", "dataset_kwargs": {"data_files": "x.json"}}
    tracker = EvaluationTracker(output_path=str(tmp_path))
    tracker.general_config_tracker.log_experiment_args("model", "pretrained=model", "", "", False)
    tracker.save_results_aggregated({"configs": configs}, None, "2026-01-01T00-00-00")
    (path,) = tmp_path.rglob("*_results.json")
    return json.loads(path.read_text())["configs"]


def test_paper_vqav2_records_its_source_and_selection(tmp_path, monkeypatch):
    n = utils.VQAV2_VALIDATION_ROWS
    copy = tmp_path / "data" / "lmms-lab" / "VQAv2" / "validation"
    questions = {"question_id": [10 * i for i in range(n)], "question": ["what is it?"] * n, "multiple_choice_answer": ["it"] * n}
    datasets.Dataset.from_dict(questions).save_to_disk(str(copy))
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path / "data"))
    configs = results_json(tmp_path / "out", ["narrowgate_vqav2"])
    config = configs["narrowgate_vqav2"]
    assert config["dataset_path"] == "lmms-lab/VQAv2" and "dataset_kwargs" not in config
    record = config[SOURCE_KEY]
    (source,) = record["sources"]
    assert source["hub_id"] == "lmms-lab/VQAv2" and source["split"] == "validation" and source["rows"] == n
    assert source["copy"] == str(copy) and len(source["fingerprint"]) >= 16
    ids = [10 * i for i in utils.paper_vqav2_indices(n)]
    assert record["documents"] == 2000 and record["id_column"] == "question_id"
    assert record["ids_sha1"] == ids_digest(ids) and record["first_ids"] == ids[:5]
    # other tasks are written as lmms-eval wrote them
    assert configs["someone_elses_task"] == {"dataset_path": "json", "dataset_kwargs": {"data_files": "x.json"}}


def test_smoke_tasks_record_the_packaged_file(tmp_path):
    configs = results_json(tmp_path, ["narrowgate_smoke_vqa", "narrowgate_smoke_caption"])
    for name, file, column in (("narrowgate_smoke_vqa", "vqa", "question_id"), ("narrowgate_smoke_caption", "caption", "image_id")):
        record = configs[name][SOURCE_KEY]
        assert configs[name]["dataset_path"] == f"narrowgate_tasks/data/smoke/{file}.parquet"
        assert record["sources"][0]["rows"] == record["documents"] == 32 and record["id_column"] == column


def test_missing_data_is_listed_before_any_model_loads(tmp_path, monkeypatch, capsys):
    """Every missing source of every task in one message, with where it goes (coco_cap needs two), before
    the grid loads a model; without NARROWGATE_DATA_DIR and offline the message names the variable."""
    from narrowgate.cli import main

    toy = Path(__file__).resolve().parents[1] / "narrowgate" / "assets" / "toy_chameleon"
    config = tmp_path / "grid.yaml"
    config.write_text(
        "tasks: [narrowgate_smoke_vqa, narrowgate_coco_cap, narrowgate_vqav2]\nconditions: [baseline]\n"
        f"models: [{{name: toy, family: chameleon, pretrained: {toy}}}]\n"
    )
    data = tmp_path / "data"
    monkeypatch.setenv(sources.ENV_VAR, str(data))
    assert main(["grid", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no model was loaded" in err and "loading toy" not in err, err
    for folder in ("yerevann/coco-karpathy/test", "lmms-lab/COCO-Caption/val", "lmms-lab/VQAv2/validation"):
        assert f"{data}/{folder} does not exist" in err, err
    assert "a save_to_disk folder of that split, or its parquet files in row order" in err
    assert not (tmp_path / "out").exists()

    monkeypatch.delenv(sources.ENV_VAR)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert main(["grid", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the hub is offline and the datasets cache has no copy" in err and "loading toy" not in err, err
    assert f"set {sources.ENV_VAR}=ROOT and put each one at ROOT/<hub id>/<split>/" in err
    assert err.count("  - ") == 3, err
