"""Caption metrics without Java: the check before any model loads, the ``NARROWGATE_SKIP_PTB`` switch,
and a failing ``*_ptb`` metric that keeps the generated samples and ``cider_paper`` (real lmms-eval on
the tiny Chameleon; Java is taken off the PATH, or replaced by a broken one)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from narrowgate_tasks import java
from narrowgate_tasks.metrics import PTB_METRICS

CAPTION = "narrowgate_smoke_caption"
LIMIT = 3


def java_free_path(tmp_path: Path, broken: bool = False) -> str:
    """A PATH with no Java on it, or with a ``java`` that prints nothing and exits 1."""
    folder = tmp_path / ("broken-java" if broken else "no-java")
    folder.mkdir(exist_ok=True)
    if broken:
        fake = folder / "java"
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    return str(folder)


def test_which_tasks_need_java():
    assert java.ptb_tasks(["narrowgate"]) == ["narrowgate_coco_cap", "narrowgate_flickr30k"]
    assert java.ptb_tasks(["narrowgate_smoke_*"]) == [CAPTION]
    assert java.ptb_tasks(["narrowgate_vqav2", "narrowgate_smoke_vqa", "coco2017_cap_val", "list"]) == []


def test_check_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", java_free_path(tmp_path))
    monkeypatch.delenv(java.SKIP_ENV, raising=False)
    java.check_java(["narrowgate_smoke_vqa"])  # no caption task: no Java needed
    with pytest.raises(java.JavaMissingError) as error:
        java.check_java(["narrowgate_vqav2", "narrowgate_coco_cap"])
    message = str(error.value)
    assert "task(s) narrowgate_coco_cap" in message
    assert "apt-get install default-jre-headless" in message and "NARROWGATE_SKIP_PTB=1" in message
    for off in ("0", ""):
        monkeypatch.setenv(java.SKIP_ENV, off)
        with pytest.raises(java.JavaMissingError):
            java.check_java(["narrowgate_coco_cap"])
    monkeypatch.setenv(java.SKIP_ENV, "1")
    java.check_java(["narrowgate_coco_cap"])


def test_launcher_refuses_before_the_model_loads(tmp_path):
    """No Java, no switch: the launcher fails on Java although the checkpoint does not even exist."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), java_free_path(tmp_path)]),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    env.pop(java.SKIP_ENV, None)
    command = [
        str(Path(sys.executable).parent / "lmms_eval"),
        "--model", "chameleon_baseline",
        "--model_args", f"pretrained={tmp_path / 'no-checkpoint'}",
        "--tasks", f"narrowgate_smoke_vqa,{CAPTION}",
        "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"FAILED: chameleon_baseline on narrowgate_smoke_vqa,{CAPTION}: JavaMissingError" in output, output[-3000:]
    assert "apt-get install default-jre-headless" in output and "NARROWGATE_SKIP_PTB=1" in output
    assert "no checkpoint folder" not in output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def chameleon(tiny_dir):
    import model_wrappers

    return model_wrappers.load_model("chameleon", str(tiny_dir("chameleon")))


def caption_run(lm) -> dict:
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from narrowgate.core.evaluation import tasks_dir

    manager = TaskManager("ERROR", include_path=tasks_dir(), include_defaults=False)
    return evaluator.simple_evaluate(
        model=lm, tasks=[CAPTION], task_manager=manager, limit=LIMIT, log_samples=True, verbosity="ERROR"
    )


def test_skip_switch_reports_cider_paper_only(chameleon, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", java_free_path(tmp_path))
    monkeypatch.setenv(java.SKIP_ENV, "1")
    out = caption_run(chameleon)
    scores = out["results"][CAPTION]
    samples = out["samples"][CAPTION]
    assert len(samples) == LIMIT
    assert math.isfinite(scores["cider_paper,none"])
    assert scores["cider_paper,none"] == pytest.approx(sum(s["cider_paper"] for s in samples) / LIMIT, abs=1e-12)
    assert not [key for key in scores if key.split(",")[0] in PTB_METRICS]  # skipped, not made up
    assert not [name for name in PTB_METRICS if name in samples[0]]


def test_the_caption_task_refuses_before_generation(chameleon, tmp_path, monkeypatch):
    """lmms-eval's own command loads the model before the tasks; building the documents (before any
    request reaches the model) checks Java again."""
    monkeypatch.setenv("PATH", java_free_path(tmp_path))
    monkeypatch.delenv(java.SKIP_ENV, raising=False)
    from narrowgate.core.evaluation import plain_error

    with pytest.raises(Exception) as error:  # lmms-eval retries building documents: RetryError(cause)
        caption_run(chameleon)
    assert isinstance(plain_error(error.value), java.JavaMissingError)
    assert "this narrowgate caption task" in str(plain_error(error.value))


def test_a_failing_metric_keeps_the_samples(chameleon, tmp_path, monkeypatch):
    """A broken Java (prints nothing, exits 1): the *_ptb metrics are NaN, everything else is kept."""
    monkeypatch.setenv("PATH", java_free_path(tmp_path, broken=True))
    monkeypatch.delenv(java.SKIP_ENV, raising=False)
    out = caption_run(chameleon)
    scores = out["results"][CAPTION]
    samples = out["samples"][CAPTION]
    assert len(samples) == LIMIT and all(isinstance(s["cider_paper"], float) for s in samples)
    assert math.isfinite(scores["cider_paper,none"])
    assert all(math.isnan(scores[f"{name},none"]) for name in PTB_METRICS)

    import argparse
    import time

    from narrowgate.launcher import missing_outputs

    args = argparse.Namespace(tasks=CAPTION, output_path=None, log_samples=False)
    problems = missing_outputs(args, out, time.time())
    assert [p.split(" of task")[0] for p in problems] == [f"metric {name}" for name in PTB_METRICS]
    assert "samples and the other scores were kept" in problems[0]


def test_grid_refuses_before_any_model_loads(tmp_path, monkeypatch, capsys):
    from narrowgate.cli import main

    monkeypatch.setenv("PATH", java_free_path(tmp_path))
    monkeypatch.delenv(java.SKIP_ENV, raising=False)
    config = tmp_path / "g.yaml"
    config.write_text(
        f"tasks: [narrowgate_smoke_vqa, {CAPTION}]\nconditions: [baseline]\n"
        "models: [{name: m, family: chameleon, pretrained: ./no-such-checkpoint}]\n"
    )
    assert main(["grid", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"narrowgate grid: Java is not on the PATH, but task(s) {CAPTION} reports" in err
    assert "no-such-checkpoint" not in err and not (tmp_path / "out").exists()
    monkeypatch.setenv(java.SKIP_ENV, "1")  # the switch: the grid goes on (and stops at the checkpoint)
    assert main(["grid", str(config), "--output", str(tmp_path / "out")]) == 2
    assert "no checkpoint folder at m: " in capsys.readouterr().err


TOY = Path(__file__).resolve().parents[1] / "narrowgate" / "assets" / "toy_chameleon"


def java_children(process, named: str = "") -> list:
    """The Java processes under ``process`` whose command line contains ``named`` (ended ones left out)."""
    import psutil

    found = []
    for child in process.children(recursive=True):
        with suppress(psutil.Error):  # ended meanwhile
            if child.name() == "java" and named in " ".join(child.cmdline()):
                found.append(child)
    return found


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupt_while_meteor_scores_stops_at_once_and_the_rerun_finishes_the_rest(tmp_path, signal_name):
    """The signal reaches the grid's process alone (a scheduler's SIGTERM, or ``kill -INT``) while
    pycocoevalcap's METEOR (Java) scores the captions: the process exits within 30 s with one line saying
    how to resume, no Java process is left, and a rerun evaluates only the unfinished cell."""
    import signal
    import time

    import psutil

    config = tmp_path / "grid.yaml"
    config.write_text(
        "tasks: [narrowgate_smoke_vqa, narrowgate_smoke_caption]\nlimit: 4\nconditions: [baseline]\n"
        f"models: [{{name: toy, family: chameleon, pretrained: {TOY}, model_args: {{batch_size: 4}}}}]\n"
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "narrowgate.cli", "grid", str(config), "--output", str(out)]
    env = {k: v for k, v in os.environ.items() if k != java.SKIP_ENV}
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        grid, deadline, meteor = psutil.Process(run.pid), time.monotonic() + 600, []
        while not meteor and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            meteor = java_children(grid, "meteor")
        assert meteor, "METEOR never started: " + run.communicate()[1][-3000:]
        time.sleep(0.5)  # inside compute_score
        seen = java_children(grid)
        sent = time.monotonic()
        run.send_signal(getattr(signal, signal_name))
        _, err = run.communicate(timeout=30)
        assert time.monotonic() - sent < 30  # measured: about 6 s
    finally:
        if run.poll() is None:
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
    assert run.returncode == 128 + getattr(signal, signal_name), err[-3000:]
    assert not [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "rerun" in last and str(out) in last, err[-3000:]
    assert (out / "toy" / "baseline" / "narrowgate_smoke_vqa" / "cell.json").is_file()
    assert not (out / "toy" / "baseline" / CAPTION / "cell.json").exists()
    if signal_name != "SIGINT":
        return  # the rerun does not depend on the signal

    from narrowgate.grid import load_config, run_grid

    report = run_grid(load_config(config), out)
    assert [(s.cell.rsplit("/", 1)[1], s.status) for s in report.statuses] == [
        ("narrowgate_smoke_vqa", "skipped"),
        (CAPTION, "done"),
    ]
