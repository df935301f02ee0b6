"""The grid: config schema and its errors; end to end on tiny checkpoints with resume after a failure."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from interventions.conditions import PAPER_CONDITIONS
from narrowgate.cli import main
from narrowgate.grid import ConfigError, load_config, parse_config, select_cells

REPO = Path(__file__).resolve().parents[1]

VALID = {
    "tasks": ["narrowgate_smoke_vqa"],
    "conditions": ["baseline", {"name": "random_image_ablated", "k": 2, "repeats": 2}],
    "models": [{"name": "tiny-chameleon", "family": "chameleon", "tiny": True}],
}


def config_with(**changes) -> dict:
    data = json.loads(json.dumps(VALID))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


DELETE = object()


def test_paper_table1_config():
    config = load_config(REPO / "configs" / "paper_table1.yaml")
    assert config.tasks == ("narrowgate_vqav2", "narrowgate_coco_cap", "narrowgate_flickr30k")
    assert {m.name: m.pretrained for m in config.models} == {
        "Chameleon-7B": "facebook/chameleon-7b",
        "Chameleon-34B": "facebook/chameleon-30b",
        "Emu3": "BAAI/Emu3-Chat-hf",
        "LLaVA-1.5": "llava-hf/llava-1.5-7b-hf",
        "LLaVA-OneVision": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
        "Pixtral-12B": "mistral-community/pixtral-12b",
        "Janus-Pro-1B": "deepseek-community/Janus-Pro-1B",
    }
    labels = [c.label for c in config.conditions]
    assert list(dict.fromkeys(labels)) == [
        "baseline",
        "gate_ablated",
        "gate_only",
        "image_ablated",
        "last_image_ablated",
        "random_image_ablated",
    ]
    assert [c.seed for c in config.conditions if c.repeated] == [0, 1, 2]
    assert len(config.cells()) == 7 * 8 * 3
    assert all(m.model_args["dtype"] == "bfloat16" for m in config.models)


def test_smoke_config_covers_every_paper_condition():
    config = load_config(REPO / "configs" / "smoke.yaml")
    assert set(config.tasks) == {"narrowgate_smoke_vqa", "narrowgate_smoke_caption"}
    assert {c.name for c in config.conditions} == set(PAPER_CONDITIONS)
    # offline: every model is a tiny checkpoint or a folder that exists (the shipped toy model)
    assert all(m.tiny_seed is not None or Path(m.pretrained).is_dir() for m in config.models)
    assert any(c.repeated for c in config.conditions)
    # the planted toy cannot caption (trained on questions only): the demo leaves its caption cells out
    tasks = {(c.model.name, c.task) for c in config.cells()}
    assert ("toy-chameleon-planted", "narrowgate_smoke_caption") not in tasks
    assert {("toy-chameleon", t) for t in config.tasks} | {("toy-chameleon-planted", "narrowgate_smoke_vqa")} == tasks


def test_a_model_runs_a_subset_of_the_tasks():
    tasks = ["narrowgate_smoke_vqa", "narrowgate_smoke_caption"]
    config = parse_config(config_with(tasks=tasks, models__0__tasks=["narrowgate_smoke_caption"]), Path("x.yaml"))
    assert {c.task for c in config.cells()} == {"narrowgate_smoke_caption"}
    assert [c.order[2] for c in config.cells()][:1] == [1]  # the task keeps its column
    with pytest.raises(ConfigError, match=r"models\[0\]\.tasks: narrowgate_vqav2 not among the grid's tasks"):
        parse_config(config_with(models__0__tasks=["narrowgate_vqav2"]), Path("x.yaml"))


def test_cells_ids_and_order():
    config = parse_config(VALID, Path("x.yaml"))
    assert [c.id for c in config.cells()] == [
        "tiny-chameleon/baseline/narrowgate_smoke_vqa",
        "tiny-chameleon/random_image_ablated-seed0/narrowgate_smoke_vqa",
        "tiny-chameleon/random_image_ablated-seed1/narrowgate_smoke_vqa",
    ]
    assert [c.order for c in config.cells()] == [(0, 0, 0), (0, 1, 0), (0, 1, 0)]
    assert [c.condition.make().seed for c in config.cells()] == [0, 0, 1]
    assert [c.id for c in select_cells(config.cells(), ["*seed1*"])] == [config.cells()[2].id]
    with pytest.raises(ConfigError, match="matches no cell; cell ids look like: tiny-chameleon/baseline/"):
        select_cells(config.cells(), ["nothing/*"])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"modles": []}, r"x\.yaml: modles: unknown key; valid keys here: description, tasks, limit"),
        ({"models": DELETE}, r"models: missing \(required\)"),
        ({"tasks": "narrowgate_smoke_vqa"}, r"tasks: expected a non-empty list of names"),
        ({"limit": 0}, r"limit: expected a positive integer or null, got 0"),
        (
            {"models__0__family": "chamelon"},
            r"models\[0\]\.family: unknown family 'chamelon'; known families: chameleon, emu3",
        ),
        ({"models__0__pretrained": "x/y"}, r"models\[0\]: give exactly one of `pretrained:`"),
        ({"models__0__tiny": DELETE}, r"models\[0\]: give exactly one of `pretrained:`"),
        ({"models__0__tiny": {"sede": 1}}, r"models\[0\]\.tiny\.sede: unknown key; valid keys here: seed"),
        ({"models__0__name": "org/model"}, r"models\[0\]\.name: expected letters, digits"),
        (
            {"models__0__model_args": {"condition": "gate_ablated"}},
            r"models\[0\]\.model_args\.condition: is set by the grid",
        ),
        ({"models__0__model_args": {"device": ["cpu"]}}, r"models\[0\]\.model_args\.device: expected a single value"),
        ({"models__0__colour": 1}, r"models\[0\]\.colour: unknown key; valid keys here: name, family, pretrained"),
        (
            {"conditions__0": "gate_ablatd"},
            r"conditions\[0\]: unknown condition 'gate_ablatd'; valid conditions: baseline",
        ),
        ({"conditions__1__seeds": [0, 1]}, r"conditions\[1\]: give only one of seed, seeds, repeats"),
        ({"conditions__1__repeats": 0}, r"conditions\[1\]\.repeats: expected a positive integer, got 0"),
        ({"conditions__1__knockout": "soft"}, r"conditions\[1\]: unknown knockout 'soft'; valid: zero, mask"),
        ({"conditions__1__layers": "9-3"}, r"conditions\[1\]: invalid layers '9-3'"),
        ({"conditions__1__colour": 1}, r"conditions\[1\]\.colour: unknown key; valid keys here: name, label"),
        ({"conditions__1__label": "baseline"}, r"conditions\[1\]: label 'baseline' is already used by conditions\[0\]"),
    ],
)
def test_config_errors_name_the_bad_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config_with(**changes), Path("x.yaml"))


def test_duplicate_model_names_and_yaml_errors(tmp_path):
    data = config_with()
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(ConfigError, match="models: duplicate model name"):
        parse_config(data, Path("x.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [a\nmodels: ]")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("!!python/object/apply:os.system ['echo unsafe']")  # safe_load refuses to build objects
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_pretrained_paths_resolve_against_the_config(tmp_path):
    data = config_with(models__0__tiny=DELETE, models__0__pretrained="./checkpoints/toy")
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "g.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).models[0].pretrained == str(tmp_path / "configs" / "checkpoints" / "toy")
    data["models"][0]["pretrained"] = "org/model"  # hub ids stay as they are
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).models[0].pretrained == "org/model"


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(
        textwrap.dedent("""
        tasks: [narrowgate_smoke_vqa]
        conditions: [baseline]
        models: [{name: m, family: nope, tiny: true}]
    """)
    )
    assert main(["grid", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "models[0].family: unknown family 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------- end to end

E2E_LIMIT = 2
E2E_CONFIG = """
tasks: [narrowgate_smoke_vqa, narrowgate_smoke_caption]
limit: 2
model_args: {batch_size: 2}
conditions: [baseline, gate_ablated, image_ablated]
models:
  - {name: tiny-chameleon, family: chameleon, tiny: {seed: 0}}
  - {name: tiny-llava, family: llava, tiny: {seed: 0}}
"""


class Spy:
    """Counts real model loads and generate calls (calling through to the real code)."""

    def __init__(self, monkeypatch):
        import model_wrappers
        from model_wrappers.base import NarrowgateModel

        self.loads: list[str] = []
        self.generated: list[tuple[str, str, str, int]] = []  # family, condition, task, requests
        real_load, real_generate = model_wrappers.load_model, NarrowgateModel.generate_until

        def load_model(family, pretrained, **model_args):
            self.loads.append(family)
            return real_load(family, pretrained, **model_args)

        def generate_until(model, requests):
            self.generated.append((model.family, model.condition.name, requests[0].args[4], len(requests)))
            return real_generate(model, requests)

        monkeypatch.setattr(model_wrappers, "load_model", load_model)
        monkeypatch.setattr(NarrowgateModel, "generate_until", generate_until)

    def reset(self):
        self.loads.clear()
        self.generated.clear()


@pytest.fixture(scope="module")
def e2e_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "e2e.yaml"
    path.write_text(E2E_CONFIG)
    return load_config(path)


@pytest.fixture(scope="module")
def reference(e2e_config, tmp_path_factory):
    """The grid run once without interruption."""
    from narrowgate.grid import run_grid

    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        spy = Spy(monkeypatch)
        report = run_grid(e2e_config, out)
    assert not report.failed, [(s.cell, s.error) for s in report.failed]
    assert spy.loads == ["chameleon", "llava"]  # each model loaded once for all its conditions
    assert [(g[1], g[2]) for g in spy.generated if g[0] == "chameleon"] == [
        (c, t) for c in ("baseline", "gate_ablated", "image_ablated") for t in e2e_config.tasks
    ]
    return out


def cell_outputs(output: Path, cell_id: str) -> tuple[dict, dict]:
    """A finished cell's metrics and its per-document outputs and scores."""
    folder = output / cell_id
    record = json.loads((folder / "cell.json").read_text())
    task = record["spec"]["task"]
    metrics = json.loads((folder / record["results"]).read_text())["results"][task]
    samples = {}
    for line in (folder / record["samples"]).read_text().splitlines():
        sample = json.loads(line)
        sample["narrowgate"].pop("pretrained")  # the wrapper's audit names the checkpoint folder of each run
        samples[sample["doc_id"]] = sample
    return metrics, samples


def test_leaderboard_of_the_smoke_grid(reference, e2e_config):
    from narrowgate import leaderboard

    board = leaderboard.build(reference, n_resamples=500)
    assert [(r.model, r.condition) for r in board.rows] == [
        (m, c) for m in ("tiny-chameleon", "tiny-llava") for c in ("baseline", "gate_ablated", "image_ablated")
    ]
    assert [c.label for c in board.columns] == [
        "narrowgate_smoke_vqa vqa_accuracy",
        *(
            f"narrowgate_smoke_caption {m}"
            for m in ("cider_paper", "cider_ptb", "bleu4_ptb", "meteor_ptb", "rouge_l_ptb")
        ),
    ]
    for row in board.rows:
        assert set(row.entries) == set(board.columns)
        for column, entry in row.entries.items():
            if row.condition == "baseline":
                assert entry.delta is None and entry.plain_delta is None
            elif column.metric in ("vqa_accuracy", "cider_paper"):  # per-sample scores: bootstrap
                assert entry.delta.n == E2E_LIMIT and entry.delta.ci_low <= entry.delta.delta <= entry.delta.ci_high
            else:  # corpus-level pycocoevalcap metrics: a plain difference
                assert entry.delta is None and entry.plain_delta is not None
    md = leaderboard.render(board, "md")
    header = [cell.strip() for cell in md.splitlines()[0].strip("|").split("|")]
    assert header[:3] == ["model", "condition", "narrowgate_smoke_vqa vqa_accuracy"]


def test_interrupted_grid_resumes_to_the_uninterrupted_result(reference, e2e_config, tmp_path, monkeypatch):
    from narrowgate.grid import run_grid

    spy = Spy(monkeypatch)
    cells = e2e_config.cells()
    out = tmp_path / "grid"
    failing, crashing = cells[1].id, cells[3].id

    def inject(cell, partial):
        if cell.id == failing:
            raise RuntimeError("injected failure")
        if cell.id == crashing:  # the process dies half-way through this cell
            (partial / "half-written.json").write_text("{")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(e2e_config, out, on_cell_start=inject)
    statuses = {c["cell"]: c for c in json.loads((out / "grid.json").read_text())["cells"]}
    assert [statuses[c.id]["status"] for c in cells[:5]] == ["done", "failed", "done", "pending", "pending"]
    assert statuses[failing]["error"] == "RuntimeError: injected failure" and "inject" in statuses[failing]["traceback"]
    assert (out / f"{crashing}.partial" / "half-written.json").exists()
    first = next((out / cells[0].id).glob("*/*_results.json")).stat()

    spy.reset()
    report = run_grid(e2e_config, out)
    done_before = {cells[0].id, cells[2].id}
    assert not report.failed
    assert [s.cell for s in report.statuses if s.status == "skipped"] == [cells[0].id, cells[2].id]
    assert report.evaluated == [c.id for c in cells if c.id not in done_before]
    assert spy.loads == ["chameleon", "llava"]
    recomputed = {(f, c, t) for f, c, t, _ in spy.generated}
    assert ("chameleon", "baseline", "narrowgate_smoke_vqa") not in recomputed
    assert ("chameleon", "gate_ablated", "narrowgate_smoke_vqa") not in recomputed
    assert len(spy.generated) == len(cells) - 2
    again = next((out / cells[0].id).glob("*/*_results.json")).stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not rewritten
    assert not list(out.rglob("*.partial")) and not list(out.rglob("half-written.json"))

    for cell in cells:  # identical to the uninterrupted run
        assert cell_outputs(out, cell.id) == cell_outputs(reference, cell.id), cell.id

    spy.reset()
    report = run_grid(e2e_config, out)  # nothing left to do: no load, no generation
    assert spy.loads == [] and spy.generated == []
    assert {s.status for s in report.statuses} == {"skipped"}


def test_rerun_with_another_setup_is_refused(reference, e2e_config):
    from narrowgate.grid import run_grid

    message = r"holds results of another setup \(limit: stored 2, now 1\); use a fresh --output"
    with pytest.raises(ConfigError, match=message):
        run_grid(e2e_config, reference, limit=1)


def test_failed_cells_are_recorded_and_the_exit_code_is_nonzero(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(
        textwrap.dedent("""
        tasks: [narrowgate_smoke_vqa]
        limit: 2
        conditions: [baseline, gate_ablated]
        models:
          - {name: missing, family: chameleon, pretrained: ./empty-checkpoint}
          - {name: tiny, family: chameleon, tiny: true}
    """)
    )
    (tmp_path / "empty-checkpoint").mkdir()  # a folder without a model: the load fails
    out = tmp_path / "out"
    assert main(["grid", str(path), "--output", str(out), "--only", "missing/*", "--only", "tiny/baseline/*"]) == 1
    cells = {c["cell"]: c for c in json.loads((out / "grid.json").read_text())["cells"]}
    assert list(cells) == [
        f"{m}/{c}/narrowgate_smoke_vqa" for m in ("missing", "tiny") for c in ("baseline", "gate_ablated")
    ]
    assert [c["status"] for c in cells.values()] == ["failed", "failed", "done", "pending"]  # the last: not selected
    assert "empty-checkpoint" in cells["missing/baseline/narrowgate_smoke_vqa"]["error"]
    err = capsys.readouterr().err
    assert "2 cell(s) failed" in err and err.count("FAILED loading missing: ") == 1


def test_unknown_task_fails_before_loading_models(tmp_path):
    from narrowgate.grid import run_grid

    config = parse_config(config_with(tasks=["narrowgate_smoke_vqa", "vqav2"]), tmp_path / "g.yaml")
    with pytest.raises(ConfigError, match="tasks: unknown task.s. vqav2; narrowgate tasks: .*narrowgate_smoke_caption"):
        run_grid(config, tmp_path / "out")


def test_demo_prints_the_table_and_the_paths(reference, e2e_config, capsys):
    """The demo on a finished grid (it resumes, so nothing is recomputed) ends with the table and paths."""
    assert main(["demo", "--config", str(e2e_config.path), "--output", str(reference)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split() == ["smoke_vqa", "smoke_caption"] and out[1].split() == ["vqa_accuracy", "cider_paper"]
    assert "tiny-llava" in out and max(len(line) for line in out[:-3]) <= 100  # the terminal summary
    html, plot = out[-3], out[-2]
    assert html == f"HTML page: {(reference / 'leaderboard.html').resolve()}"
    assert plot == f"Plot:      {(reference / 'leaderboard.png').resolve()}"
    assert (reference / "leaderboard.html").read_text().startswith("<!DOCTYPE html>")
    assert (reference / "leaderboard.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------- data parallel

VQA = "narrowgate_smoke_vqa"
DP_ONLY = f"toy-chameleon/*/{VQA}"  # the trained toy model: its scores mean something
DP_LIMIT = 6


@pytest.fixture(scope="module")
def smoke_reference(tmp_path_factory):
    """The smoke config's toy-Chameleon VQA cells in this one process."""
    from narrowgate.grid import run_grid

    out = tmp_path_factory.mktemp("smoke-one")
    report = run_grid(load_config(REPO / "configs" / "smoke.yaml"), out, limit=DP_LIMIT, only=[DP_ONLY])
    assert not report.failed and len(report.evaluated) == 9, [(s.cell, s.error) for s in report.statuses]
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_free(outputs: tuple[dict, dict]) -> tuple[dict, dict]:
    """A cell's outputs without where each document sat in its batch (row, left padding, hence the
    positions of the cut edges): sharding the documents over ranks changes the batches, nothing else."""
    metrics, samples = outputs
    for sample in samples.values():
        audit = sample["narrowgate"]
        layout, _ = audit.pop("layout"), audit.pop("cut")  # the cut edges follow from the spans and condition
        shift = layout["first"]
        audit["spans"] = [{k: [p - shift for p in v] for k, v in span.items()} for span in layout["spans"]]
        audit["length"] = layout["length"] - shift
    return metrics, samples


def test_two_processes_give_the_results_of_one_and_resume(smoke_reference, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank a model copy, lmms-eval shards the documents, rank 0
    writes; a cell finished before (copied from the one-process run) is kept as it is."""
    import os
    import shutil
    import subprocess
    import sys

    out = tmp_path / "smoke-two"
    done = "toy-chameleon/baseline/narrowgate_smoke_vqa"
    shutil.copytree(smoke_reference / done, out / done)
    before = (out / done / "cell.json").stat().st_mtime_ns
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "narrowgate.grid", str(REPO / "configs" / "smoke.yaml"), "--output", str(out),
        "--limit", str(DP_LIMIT), "--only", DP_ONLY,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 of 9 cells already done" in result.stderr
    assert result.stderr.count("already done") == 1  # rank 0 alone reports
    assert (out / done / "cell.json").stat().st_mtime_ns == before
    cells = [
        c["cell"] for c in json.loads((smoke_reference / "grid.json").read_text())["cells"] if c["status"] == "done"
    ]
    assert len(cells) == 9
    for cell in cells:
        assert batch_free(cell_outputs(out, cell)) == batch_free(cell_outputs(smoke_reference, cell)), cell
    statuses = {c["cell"]: c["status"] for c in json.loads((out / "grid.json").read_text())["cells"]}
    assert [statuses[c] for c in cells] == ["skipped"] + ["done"] * 8


def test_cells_record_a_replayable_lmms_eval_model(smoke_reference):
    """cell.json names the --model and --model_args that run the same cell from the lmms_eval command."""
    from lmms_eval.utils import simple_parse_args_string

    from model_wrappers.registry import model_class

    cell_id = f"toy-chameleon/random_image_ablated-seed1/{VQA}"
    folder = smoke_reference / cell_id
    replay = json.loads((folder / "cell.json").read_text())["lmms_eval"]
    assert replay["model"] == "chameleon_random_image_ablated"
    args = simple_parse_args_string(replay["model_args"])
    assert {k: args[k] for k in ("batch_size", "k", "seed")} == {"batch_size": 4, "k": 4, "seed": 1}
    lm = model_class(replay["model"])(**args)  # the class lmms-eval resolves --model to, with --model_args
    cell = next(c for c in load_config(REPO / "configs" / "smoke.yaml").cells() if c.id == cell_id)
    assert lm.condition == cell.condition.make() and lm.batch_size == 4


def test_gate_share_of_the_smoke_grid(smoke_reference):
    """The leaderboard's gate share on real grid output equals gate_share of the cells' per-document scores."""
    from narrowgate import leaderboard

    board = leaderboard.build(smoke_reference, n_resamples=500)
    (share,) = board.shares
    assert (share.model, share.task, share.metric) == ("toy-chameleon", "narrowgate_smoke_vqa", "vqa_accuracy")
    scores = {}
    for condition in ("baseline", "gate_ablated", "gate_only", "image_ablated"):
        _, samples = cell_outputs(smoke_reference, f"toy-chameleon/{condition}/{VQA}")
        scores[condition] = [samples[d]["vqa_accuracy"] for d in sorted(samples)]
    through = leaderboard.gate_share(
        scores["baseline"], scores["gate_ablated"], scores["image_ablated"], n_resamples=500
    )
    assert share.through == through
    assert share.bypass.ratio == pytest.approx(
        leaderboard.gate_share(scores["baseline"], scores["gate_only"], scores["image_ablated"]).ratio
    )
    assert share.image_effect.ci_low > 0  # cutting the image off costs the trained toy model accuracy


def test_a_copied_config_with_broken_paths_is_one_error_before_anything_runs(tmp_path, capsys):
    """configs/smoke.yaml copied elsewhere: its ../ paths resolve against the copy's folder, where there is
    no checkpoint; one config error names both folders, nothing is evaluated or written."""
    copy = tmp_path / "elsewhere" / "smoke.yaml"
    copy.parent.mkdir()
    copy.write_text((REPO / "configs" / "smoke.yaml").read_text())
    assert main(["grid", str(copy), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("narrowgate grid:") == 1 and "FAILED" not in err, err
    for name in ("toy_chameleon", "toy_chameleon_planted"):
        assert f"{tmp_path}/narrowgate/assets/{name}" in err
    assert f"relative to the config file's folder {tmp_path}/elsewhere" in err
    assert not (tmp_path / "out").exists()


TOY = REPO / "narrowgate" / "assets" / "toy_chameleon"


def toy_config(tmp_path: Path, pretrained: Path = TOY) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(
        "tasks: [narrowgate_smoke_vqa]\nlimit: 2\nconditions: [baseline, gate_ablated]\n"
        f"models: [{{name: toy, family: chameleon, pretrained: {pretrained}}}]\n"
    )
    return path


def test_one_line_per_cell_and_the_libraries_output_in_the_log(tmp_path, capfd):
    out = tmp_path / "out"
    assert main(["grid", str(toy_config(tmp_path)), "--output", str(out)]) == 0
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[grid] loading toy (chameleon",
        "[grid] 1/2 toy/baseline/narrowgate_smoke_vqa",
        "[grid] 2/2 toy/gate_ablated/narrowgate_smoke_vqa",
        f"2/2 cells done in {out}",
    ], lines
    assert "chameleon generate (" in (out / "grid.log").read_text()  # the progress bars went to the log


def test_the_time_left_comes_from_measured_cells_of_the_same_kind():
    """Conditions generated together: the first cell of a model and task computes every condition's
    answers (slow), the others read them (fast); each cell left is expected to take what its kind took."""
    from narrowgate.grid.runner import Clock

    config = parse_config(
        {**VALID, "tasks": ["a", "b"], "conditions": ["baseline", "gate_ablated", "gate_only", "image_ablated"]},
        Path("x.yaml"),
    )
    cells = config.cells()
    by_id = {c.id: c for c in cells}
    clock = Clock(cells, sequential=False)
    assert clock.left() == ""  # nothing measured yet
    clock.done(by_id["tiny-chameleon/baseline/a"], 100.0)  # first of task a: every condition generated
    clock.done(by_id["tiny-chameleon/baseline/b"], 80.0)  # first of task b
    clock.done(by_id["tiny-chameleon/gate_ablated/a"], 2.0)
    # left: 2 more of a (2 s each), 3 of b (their kind unmeasured: the mean of the cells that follow, 2 s)
    assert clock.left() == " (about 10 s left)"
    sequential = Clock(cells, sequential=True)
    sequential.done(cells[0], 30.0)
    assert sequential.left() == f" (about {30 * 7 / 60:.1f} min left)"  # every cell generates on its own


def test_a_damaged_weight_file_is_named_in_one_line(tmp_path, capfd):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(TOY, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:4000])  # a header length past the end
    out = tmp_path / "out"
    assert main(["grid", str(toy_config(tmp_path, damaged)), "--output", str(out)]) == 1
    err = capfd.readouterr().err
    assert f"FAILED loading toy: CorruptCheckpointError: damaged weight file(s) in {damaged}: {weights} (" in err
    assert "Traceback" not in err and err.count("FAILED") == 1, err
    assert main(["grid", str(toy_config(tmp_path, damaged)), "--output", str(out), "--verbose"]) == 1
    assert "Traceback (most recent call last)" in capfd.readouterr().err


def test_help_is_for_users_and_keeps_its_layout(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "configure(parser)" not in top and "narrowgate demo " in top
    with pytest.raises(SystemExit):
        main(["grid", "--help"])
    grid = capsys.readouterr().out
    assert "\n    tasks: [narrowgate_vqav2, ...]            lmms-eval task names" in grid  # the example as written
    assert "``" not in grid
