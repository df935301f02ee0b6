"""The emergence study driver end to end: configs/study_mini.yaml through the real ``narrowgate study``
command (real train-toy processes, real lmms-eval grid, real analyses), its resume, its config errors,
and the two-level bootstrap of the gate shares."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from narrowgate.cli import main
from narrowgate.core.stats import paired_bootstrap_ratio
from narrowgate.study.aggregate import seed_bootstrap_ratio
from narrowgate.study.evaluation import MEASURES
from narrowgate.study.plan import StudyError, load_study, plan

MINI = Path(__file__).parents[1] / "configs" / "study_mini.yaml"
FACTORIAL_MINI = Path(__file__).parents[1] / "configs" / "study_factorial_mini.yaml"


def _snapshot(output: Path) -> dict[str, int]:
    """mtime (ns) of every file the study writes before its table: logs, checkpoints, grid cells, measures."""
    skip = {"study.csv", "study.md", "study.json", "grid.json"}
    return {str(p): p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file() and p.name not in skip and "plots" not in p.parts}


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, dict[str, int], int]:
    """The miniature run twice into one folder: (output, files after the first run, second exit code)."""
    output = tmp_path_factory.mktemp("study") / "mini"
    assert main(["study", "emergence", str(MINI), "--output", str(output)]) == 0
    first = _snapshot(output)
    second = main(["study", "emergence", str(MINI), "--output", str(output)])
    return output, first, second


def test_mini_table(mini) -> None:
    output, _, _ = mini
    study = load_study(MINI)
    table = pd.read_csv(output / "study.csv", keep_default_na=False, na_values=[""])
    assert list(table["cell"]) == ["base", "image_loss=0", "reference/planted"]
    assert list(table["factor"]) == ["base", "image_loss", "reference"]
    for checkpoint in study.checkpoints():
        for name in MEASURES:
            assert (checkpoint.folder(output) / f"{name}.json").is_file(), (checkpoint.id, name)
    # one seed: the table's share is each run's document-level share (leaderboard.summary.gate_share)
    for checkpoint, (_, row) in zip(study.checkpoints(), table.iterrows()):
        shares = json.loads((checkpoint.folder(output) / "gate_share.json").read_text())["tasks"]["narrowgate_smoke_vqa"]
        assert row["baseline"] == pytest.approx(shares["means"]["baseline"], abs=1e-12)
        for share in ("through", "bypass"):
            expected = np.nan if shares[share] is None else shares[share]["ratio"]
            assert row[share] == pytest.approx(expected, abs=1e-12, nan_ok=True)
        flips = json.loads((checkpoint.folder(output) / "patching.json").read_text())
        assert row["flip_fraction_mean"] == pytest.approx(flips["flip_fraction"], abs=1e-12)
        gap = json.loads((checkpoint.folder(output) / "gap.json").read_text())
        overlap = json.loads((checkpoint.folder(output) / "overlap.json").read_text())
        assert row["gap_cosine_mean"] == pytest.approx(gap["gap_cosine"], abs=1e-12)
        assert row["gap_homogeneity_mean"] == pytest.approx(gap["gap_homogeneity"], abs=1e-12)
        assert row["gate_chi_mean"] == pytest.approx(overlap["gate_chi"], abs=1e-12)
        assert row["image_chi_mean"] == pytest.approx(overlap["image_chi"], abs=1e-12)
    planted = table.iloc[2]  # the planted toy passes the image through its gate: a share with a CI above 0
    assert planted["through"] > 0.5 and planted["through_ci_low"] > 0 and bool(planted["through_above_zero"])
    assert planted["flip_fraction_mean"] > 0 and planted["attention_gate_mean"] > table.iloc[0]["attention_gate_mean"]
    markdown = (output / "study.md").read_text()
    assert "| reference | planted |" in markdown and "| image_loss | 0 |" in markdown
    assert (output / "plots" / "image_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = json.loads((output / "study.json").read_text())
    assert sorted(recorded["runs"]) == ["base/seed0", "image_loss=0/seed0"]
    assert recorded["runs"]["image_loss=0/seed0"]["image_loss"] == 0


def test_mini_resumes_without_redoing_anything(mini) -> None:
    output, first, second = mini
    assert second == 0
    assert _snapshot(output) == first  # no checkpoint, train log, grid cell or measure file was rewritten


@pytest.fixture(scope="module")
def factorial_mini(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("study") / "factorial"
    assert main(["study", "emergence", str(FACTORIAL_MINI), "--output", str(output)]) == 0
    return output


def test_factorial_mini_end_to_end(factorial_mini) -> None:
    """The half factorial of codebook x questions on scenes: both corners trained, each run asked only its
    own world's smoke task and analysed on its own world's drawings, the curve and giveaway measured, the
    main effects and their plots written."""
    from narrowgate_tasks.scenes import QUESTION_SETS

    output = factorial_mini
    study = load_study(FACTORIAL_MINI)
    table = pd.read_csv(output / "study.csv", keep_default_na=False, na_values=[""])
    assert list(table["cell"]) == ["codebook=kmeans+questions=single", "codebook=random+questions=aggregation", "reference/planted"]
    assert list(table["task"]) == ["narrowgate_scenes_single_vqa", "narrowgate_scenes_aggregation_vqa", "narrowgate_smoke_vqa"]
    grid = json.loads((output / "grid" / "grid.json").read_text())
    evaluated = {tuple(c["cell"].split("/")[::2]) for c in grid["cells"] if c["status"] == "done"}
    assert evaluated == {(c.name, task) for c in study.checkpoints() for task in study.tasks_of(c)}  # only its own task
    for run, questions in zip(study.runs, ("single", "aggregation")):
        folder = run.folder(output)
        assert run.recipe.questions == questions and run.recipe.codebook == ("kmeans" if questions == "single" else "random")
        overlap = json.loads((folder / "overlap.json").read_text())
        assert sorted(overlap["chance"]) == sorted(QUESTION_SETS[questions])  # analysed on its own world's labels
        recorded = json.loads((run.checkpoint(output) / "toy_curve.json").read_text())
        curve = json.loads((folder / "curve.json").read_text())
        assert curve["step"] == [p["step"] for p in recorded["points"]] and curve["step"][-1] == 20
        assert curve["final_accuracy"] == recorded["points"][-1]["accuracy"] and isinstance(curve["converged"], bool)
        giveaway = json.loads((folder / "giveaway.json").read_text())
        assert 0 <= giveaway["fraction"] <= 1 and sorted(giveaway["per_kind"]) == sorted(QUESTION_SETS[questions])
    reference = json.loads((study.references[0].folder(output) / "curve.json").read_text())
    assert reference["final_accuracy"] is None and reference["converged"] is None
    row = table.iloc[1]
    assert row["giveaway_mean"] == json.loads((study.runs[1].folder(output) / "giveaway.json").read_text())["fraction"]
    assert row["converged"] in ("0/1", "1/1") and not row["bar"]  # one seed never meets the bar
    effects = pd.read_csv(output / "study_effects.csv")
    assert list(effects["factor"].unique()) == ["codebook", "questions"] and set(effects["task"]) == {"own"}
    assert set(effects["n_low"]) <= {0, 1} and effects["ci_low"].isna().all()  # one run per level: no interval
    markdown = (output / "study.md").read_text()
    assert "| codebook | questions | task |" in markdown and "## Main effects" in markdown and "aliased" in markdown
    for name in ("main_effects.png", "learning_curves.png"):
        assert (output / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_changed_recipe_under_a_finished_run_is_an_error(mini, tmp_path: Path, capsys) -> None:
    output, _, _ = mini
    copy = tmp_path / "copy"
    shutil.copytree(output / "runs", copy / "runs")
    config = tmp_path / "changed.yaml"
    config.write_text(MINI.read_text().replace("steps: 20", "steps: 21"))
    assert main(["study", "emergence", str(config), "--output", str(copy)]) == 2
    assert "holds another recipe than the config's" in capsys.readouterr().err


def test_recipe_written_before_a_new_field_is_the_same_recipe(tmp_path: Path) -> None:
    """An output trained before ToyRecipe gained a field resumes: the missing field takes its default."""
    import dataclasses

    from narrowgate.study.training import trained
    from narrowgate.toy import RECIPE_FILE

    run = load_study(MINI).runs[0]
    recipe = dataclasses.asdict(run.recipe)
    assert recipe.pop("gate_target") == "none"  # a default: as if the field did not exist yet
    (run.checkpoint(tmp_path)).mkdir(parents=True)
    (run.checkpoint(tmp_path) / RECIPE_FILE).write_text(json.dumps(recipe))
    assert trained(run, tmp_path)
    (run.checkpoint(tmp_path) / RECIPE_FILE).write_text(json.dumps({**recipe, "retired_field": 1}))
    with pytest.raises(StudyError, match="holds another recipe than the config's"):
        trained(run, tmp_path)


def test_plan_cells_one_factor_at_a_time() -> None:
    study = plan(
        {"base": {"steps": 5}, "factors": {"image_loss": [0, 1, 4], "num_hidden_layers": [2, 4]}, "seeds": [0, 1]},
        Path("s.yaml"),
    )
    # image_loss 1 and num_hidden_layers 4 are the defaults: they are the base cell, not cells of their own;
    # seed-major, so a study cut short has every cell at its first seeds
    assert [run.id for run in study.runs] == [
        "base/seed0", "image_loss=0/seed0", "image_loss=4/seed0", "num_hidden_layers=2/seed0",
        "base/seed1", "image_loss=0/seed1", "image_loss=4/seed1", "num_hidden_layers=2/seed1",
    ]  # fmt: skip
    run = study.runs[2]
    assert (run.recipe.image_loss, run.recipe.steps, run.recipe.seed, run.recipe.num_hidden_layers) == (4.0, 5, 0, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"base": {"stepz": 5}, "seeds": [0]}, "base.stepz: unknown recipe field; valid ToyRecipe fields: seed, steps,"),
        ({"factors": {"depth": [2]}, "seeds": [0]}, "factors.depth: unknown recipe field"),
        ({"factors": {"image_loss": [0, "lots"]}, "seeds": [0]}, "factors.image_loss[1]: ToyRecipe.image_loss must be float, got 'lots'"),
        ({"factors": {"steps": [0.5]}, "seeds": [0]}, "factors.steps[0]: ToyRecipe.steps must be int, got 0.5"),
        ({"factors": {"image_loss": [0, 0]}, "seeds": [0]}, "factors.image_loss[1]: level 0 is listed twice"),
        ({"factors": {"seed": [1]}, "seeds": [0]}, "factors.seed: the seeds come from `seeds:`"),
        ({"base": {"steps": 5}}, "seeds: missing (required)"),
        ({"seeds": [0, 0]}, "seeds: seeds must be distinct"),
        ({"seeds": [0], "conditions": ["baseline", "gate_only"]}, "conditions: the gate shares need baseline,"),
        ({"seeds": [0], "references": ["natural"]}, "references: unknown shipped toy(s) natural; valid: toy, planted"),
        ({"seeds": [0], "analyses": {"pairs": 3}}, "analyses.pairs: unknown key; valid keys here: attention, patching"),
        ({"seeds": [0], "job": 2}, "job: unknown key; valid keys here: description, design, fraction, base, factors,"),
        ({"seeds": [0], "design": "latin"}, "design: expected one of one_at_a_time, factorial, got 'latin'"),
        ({"seeds": [0], "fraction": "quarter"}, "fraction: expected one of full, half, got 'quarter'"),
        ({"seeds": [0], "tasks": "mine"}, "tasks: expected `own` (each run's own smoke task) or a non-empty list"),
        ({"seeds": [0], "fraction": "half", "factors": {"image_loss": [0, 4], "t2i": [0, 1]}}, "fraction: half needs design: factorial"),
        (
            {"seeds": [0], "design": "factorial", "fraction": "half", "factors": {"image_loss": [0, 1, 4], "t2i": [0, 1]}},
            "factors.image_loss: fraction: half needs exactly two levels per factor, got 3",
        ),
        (
            {"seeds": [0], "design": "factorial", "fraction": "half", "factors": {"image_loss": [0, 4]}},
            "fraction: half of one factor is a single cell",
        ),
        (
            {"seeds": [0], "design": "factorial", "factors": {"gate_target": ["none", "a+b"]}},
            "factors.gate_target[1]: level a+b must not contain '+': it joins a factorial cell's levels",
        ),
    ],
)
def test_bad_config_names_the_key(data, message) -> None:
    with pytest.raises(StudyError) as error:
        plan(data, Path("bad.yaml"))
    assert str(error.value).startswith(f"bad.yaml: {message}")


def test_plan_factorial_cells_and_half_fraction() -> None:
    factors = {"image_loss": [0, 4], "t2i": [0, 1], "num_hidden_layers": [2, 4]}
    full = plan({"design": "factorial", "base": {"steps": 5}, "factors": factors, "seeds": [0, 1]}, Path("s.yaml"))
    names = [f"image_loss={a}+t2i={b}+num_hidden_layers={c}" for a in (0, 4) for b in (0, 1) for c in (2, 4)]
    assert [run.id for run in full.runs] == [f"{n}/seed{s}" for s in (0, 1) for n in names]  # seed-major, last factor fastest
    run = full.runs[5]  # image_loss=4+t2i=0+num_hidden_layers=4
    assert run.levels == (("image_loss", 4), ("t2i", 0), ("num_hidden_layers", 4)) and run.cell == names[5]
    assert (run.recipe.image_loss, run.recipe.t2i, run.recipe.num_hidden_layers, run.recipe.steps) == (4.0, 0.0, 4, 5)
    assert run.folder(Path("o")) == Path("o/runs") / names[5] / "seed0" and run.name == names[5].replace("=", "-") + "_seed0"
    # half (I = ABC): the cells whose level signs (first listed -1, second +1) multiply to +1
    half = plan({"design": "factorial", "fraction": "half", "factors": factors, "seeds": [0]}, Path("s.yaml"))
    assert [run.cell for run in half.runs] == [names[1], names[2], names[4], names[7]]
    signs = [[-1 if factors[f].index(v) == 0 else 1 for f, v in run.levels] for run in half.runs]
    assert all(np.prod(s) == 1 for s in signs) and len({tuple(s) for s in signs}) == 4
    # an even number of factors keeps both corners
    two = plan({"design": "factorial", "fraction": "half", "factors": {"image_loss": [0, 4], "t2i": [0, 1]}, "seeds": [0]}, Path("s.yaml"))
    assert [run.cell for run in two.runs] == ["image_loss=0+t2i=0", "image_loss=4+t2i=1"]
    # one at a time is unchanged by the generalisation: no factorial cell names
    assert [run.cell for run in plan({"factors": factors, "seeds": [0]}, Path("s.yaml")).runs] == [
        "base", "image_loss=0", "image_loss=4", "t2i=1", "num_hidden_layers=2",
    ]  # fmt: skip


def test_tasks_own_asks_each_run_its_own_world(tmp_path: Path) -> None:
    """`tasks: own`: the grid holds every run's own smoke task, each model restricted to its own (a
    reference to the shapes smoke task), and the analyses read each run's own world."""
    from narrowgate.study.evaluation import grid_config

    study = plan(
        {"design": "factorial", "base": {"world": "scenes"}, "factors": {"questions": ["single", "aggregation"]},
         "seeds": [0], "tasks": "own", "references": ["planted"]},
        Path("own.yaml"),
    )  # fmt: skip
    grid = grid_config(study, tmp_path)
    assert grid.tasks == ("narrowgate_scenes_single_vqa", "narrowgate_scenes_aggregation_vqa", "narrowgate_smoke_vqa")
    assert [(m.name, m.tasks) for m in grid.models] == [
        ("questions-single_seed0", ("narrowgate_scenes_single_vqa",)),
        ("questions-aggregation_seed0", ("narrowgate_scenes_aggregation_vqa",)),
        ("reference-planted", ("narrowgate_smoke_vqa",)),
    ]
    assert [c.examples for c in study.checkpoints()] == ["scenes_single", "scenes_aggregation", "shapes"]
    listed = plan({"seeds": [0], "references": ["planted"]}, Path("listed.yaml"))  # the config's tasks, for every model
    assert [m.tasks for m in grid_config(listed, tmp_path).models] == [None, None]


def test_v2_config_is_a_half_factorial_of_eight_cells() -> None:
    study = load_study(Path(__file__).parents[1] / "configs" / "study_emergence_v2.yaml")
    cells = list(dict.fromkeys(run.cell for run in study.runs))
    assert len(cells) == 8 and len(study.runs) == 24 and study.file.fraction == "half"
    assert cells[0] == "image_tokens=64+codebook=kmeans+questions=single+generation_first=0"  # both corners kept (k even)
    assert cells[-1] == "image_tokens=256+codebook=random+questions=aggregation+generation_first=0.5"
    assert {run.recipe.world for run in study.runs} == {"scenes"}
    assert set(study.tasks) == {"narrowgate_scenes_single_vqa", "narrowgate_scenes_aggregation_vqa", "narrowgate_smoke_vqa"}


def test_bad_factorial_combination_names_the_cell() -> None:
    """Each level is valid with the base (checked one by one, naming the level); this combination is not."""
    factors = {"world": ["shapes", "scenes"], "questions": ["single", "aggregation"]}
    data = {"design": "factorial", "base": {"world": "scenes"}, "factors": factors, "seeds": [0]}
    with pytest.raises(StudyError) as error:
        plan(data, Path("bad.yaml"))
    assert str(error.value).startswith("bad.yaml: factors: cell world=shapes+questions=aggregation: ToyRecipe.questions")


def test_bad_config_through_the_command(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("seeds: [0]\nfactors: {image_loss: [zero]}\n")
    assert main(["study", "emergence", str(config), "--output", str(tmp_path / "out")]) == 2
    assert "factors.image_loss[0]: ToyRecipe.image_loss must be float, got 'zero'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_seed_bootstrap_one_seed_is_the_document_bootstrap() -> None:
    rng = np.random.default_rng(3)
    num, den = rng.normal(0.3, 1, 40), rng.normal(1, 1, 40)
    ratio = seed_bootstrap_ratio([(num, den)], n_resamples=2000, seed=0)
    reference = paired_bootstrap_ratio(num, den, n_resamples=2000, seed=1)  # the seed its one draw uses
    assert (ratio.mean, ratio.ci_low, ratio.ci_high) == (reference.ratio, reference.ci_low, reference.ci_high)


def test_seed_bootstrap_spans_the_seeds() -> None:
    """Per-seed shares 0.2 and 0.8, each exact on every document: the document resampling cannot move them,
    so the interval comes from resampling seeds alone: means 0.2, 0.5, 0.8 -> [0.2, 0.8]."""
    den = np.array([1.0, 2.0, 0.5, 1.5])
    ratio = seed_bootstrap_ratio([(0.2 * den, den), (0.8 * den, den)], n_resamples=4000)
    assert ratio.mean == pytest.approx(0.5, abs=1e-12)
    assert (ratio.ci_low, ratio.ci_high) == pytest.approx((0.2, 0.8), abs=1e-12)
    assert ratio.per_seed == pytest.approx((0.2, 0.8), abs=1e-12)
    # a seed whose image has no effect has no share: it is left out, and so is its NaN
    zero = seed_bootstrap_ratio([(0.2 * den, den), (den, 0 * den)], n_resamples=100)
    assert (zero.mean, zero.ci_low, zero.ci_high) == pytest.approx((0.2, 0.2, 0.2), abs=1e-12)
    assert np.isnan(zero.per_seed[1])
    assert seed_bootstrap_ratio([(den, 0 * den)], n_resamples=100) is None


def test_bad_condition_is_reported_before_training(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("seeds: [0]\nconditions: [baseline, gate_ablated, gate_only, image_ablated, gate_closed]\n")
    assert main(["study", "emergence", str(config), "--output", str(tmp_path / "out")]) == 2
    assert f"{config}: conditions[4]:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _fabricate(folder: Path, scores: tuple, *, chi: float = 0.5, giveaway: float = 0.2, curve: list[float] | None = None) -> None:
    """Measure files as evaluation.py writes them: ``scores`` = (baseline, gate_ablated, gate_only,
    image_ablated) per document on the smoke task; ``curve``: the learning curve's accuracies (None: no curve)."""
    from narrowgate.study.evaluation import converged

    folder.mkdir(parents=True)
    by_condition = dict(zip(("baseline", "gate_ablated", "gate_only", "image_ablated"), scores))
    means = {k: float(np.mean(v)) for k, v in by_condition.items()}
    ratio = {  # the run's own document-level share (gate_share.json): None where its effect's CI would contain 0
        share: None if means["baseline"] == means["image_ablated"]
        else {"ratio": (means["baseline"] - means[c]) / (means["baseline"] - means["image_ablated"])}
        for share, c in (("through", "gate_ablated"), ("bypass", "gate_only"))
    }
    task = {"metric": "vqa_accuracy", "means": means, "scores": by_condition, **ratio}
    (folder / "gate_share.json").write_text(json.dumps({"tasks": {"narrowgate_smoke_vqa": task}}))
    (folder / "attention.json").write_text(json.dumps({"gate_vs_image": 0.1}))
    (folder / "patching.json").write_text(json.dumps({"flip_fraction": 0.0}))
    (folder / "gap.json").write_text(json.dumps({"gap_cosine": 0.1, "gap_homogeneity": 0.9}))
    (folder / "overlap.json").write_text(json.dumps({"gate_chi": chi, "image_chi": 0.4}))
    steps = list(range(0, 50 * len(curve or []), 50))
    summary = {"final_accuracy": curve[-1], "converged": converged(curve)} if curve else {"final_accuracy": None, "converged": None}
    (folder / "curve.json").write_text(json.dumps({**summary, "step": steps, "accuracy": curve or []}))
    (folder / "giveaway.json").write_text(json.dumps({"fraction": giveaway}))


def test_table_gives_exact_bounds_and_undefined_shares(tmp_path: Path) -> None:
    """Fabricated measure files: where gate_ablated changes no answer the table gives the exact bound, not
    the bootstrap's [0, 0]; where the image effect's CI contains 0 no share is given; the reasons are in
    study.md, with the image effect's CI."""
    from narrowgate.study.aggregate import changed_at_most, write_table

    study = load_study(MINI)
    ones, half = [1.0] * 8, [1.0] * 4 + [0.0] * 4
    scores = {  # per checkpoint: baseline, gate_ablated, gate_only, image_ablated on 8 documents
        "base/seed0": (ones, ones, half, half),  # the image matters, the gate changes no answer
        "image_loss=0/seed0": (ones, ones, ones, [0.0] + [1.0] * 7),  # an effect of 1/8: its CI contains 0
        "reference/planted": (ones, half, ones, half),  # a narrow gate
    }
    for checkpoint in study.checkpoints():
        _fabricate(checkpoint.folder(tmp_path), scores[checkpoint.id], curve=None if checkpoint.id.startswith("ref") else [0.5] * 4)
    table = write_table(study, tmp_path, n_resamples=2000).set_index("cell")
    assert changed_at_most(0, 96) == pytest.approx(1 - 0.05 ** (1 / 96)) and round(changed_at_most(0, 96), 3) == 0.031
    base = table.loc["base"]
    assert (base["through_changed"], base["through_answers"]) == (0, 8) and bool(base["shares_defined"])
    assert base["image_effect"] == 0.5 and base["image_effect_ci_low"] > 0
    # no answer changed: the detectable share from the CI [0, exact bound / effect]
    assert base["through_detectable"] == pytest.approx(2.8 * changed_at_most(0, 8) / 0.5 / 3.92, abs=1e-12)
    faint = table.loc["image_loss=0"]
    assert not faint["shares_defined"] and np.isnan(faint["through"]) and faint["image_effect_ci_low"] <= 0
    assert faint["through_detectable"] == pytest.approx(2.8 * changed_at_most(0, 8) / (1 / 8) / 3.92, abs=1e-12)
    planted = table.loc["reference/planted"]
    assert planted["through"] == 1.0 and not planted["bar"]  # a reference is no seeds: never meets the bar
    assert planted["converged"] == "" and np.isnan(planted["curve_accuracy_mean"]) and planted["giveaway_mean"] == 0.2
    assert (base["converged"], base["curve_accuracy_mean"]) == ("1/1", 0.5)
    markdown = (tmp_path / "study.md").read_text()
    rows = {line.split(" | ")[0] + " " + line.split(" | ")[1]: line for line in markdown.splitlines() if line.startswith("| ")}
    assert f"0 of 8 answers changed: ≤ {changed_at_most(0, 8):.1%}" in rows["| base "]
    assert "0.00 [0.00, 0.00]" not in rows["| base "]
    assert rows["| image_loss 0"].count("undefined: effect CI contains 0") == 2
    assert "| 0.50 [" in rows["| base "] and "Clopper-Pearson" in markdown and "Main effects" not in markdown
    assert rows["| base "].endswith("| 0.10 (0.10–0.10) | 0.90 (0.90–0.90) | 0.50 (0.50–0.50) | 0.40 (0.40–0.40) |")
    assert "| 1.00 | 1/1 | 0.50 (0.50–0.50) | 0.20 (0.20–0.20) |" in rows["| base "]
    assert "| 1.00 | — | — | 0.20 (0.20–0.20) |" in rows["| reference planted"]  # a reference has no curve
    assert not (tmp_path / "study_effects.csv").exists()


def test_converged_compares_the_last_fifth_with_the_fifth_before() -> None:
    from narrowgate.study.evaluation import converged

    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]  # fifths of 2: 0.925 against 0.75
    assert converged(rising) is False
    assert converged([0.1] * 6 + [0.80, 0.84, 0.86, 0.88]) is True  # 0.87 against 0.82: within 0.05
    assert converged([0.1] * 6 + [0.80, 0.80, 0.86, 0.86]) is False  # 0.86 against 0.80: 0.06 apart
    assert converged([0.2, 0.6]) is False and converged([0.6, 0.62]) is True  # fifths of one point
    assert converged([0.5]) is None and converged([]) is None


FACTORIAL = {"design": "factorial", "factors": {"image_loss": [0, 4], "t2i": [0, 1]}, "seeds": [0, 1, 2]}


def test_factorial_table_bar_and_main_effects(tmp_path: Path) -> None:
    """Fabricated measure files of a 2 x 2 factorial with 3 seeds: the bar holds in the one cell whose gate
    carries the whole effect with no bypass; the main effects are the level means' differences with Welch
    intervals over runs (checked against the formula); study.md has a column per factor and the section."""
    from scipy.stats import t

    from narrowgate.study.aggregate import write_table
    from narrowgate.study.plots import write_plots

    study = plan(FACTORIAL, Path("f.yaml"))
    ones, zeros = [1.0] * 8, [0.0] * 8

    def changed(k: int) -> list[float]:  # k of the 8 answers lost: a share of k/8 of an effect of 1
        return [0.0] * k + [1.0] * (8 - k)

    through = {  # cell -> the knockouts' lost answers per seed: (gate_ablated, gate_only)
        "image_loss=0+t2i=0": [(8, 0)] * 3,  # a narrow gate: meets the bar
        "image_loss=0+t2i=1": [(4, 0)] * 3,  # through 0.5, but its CI over 8 documents reaches below 0.3
        "image_loss=4+t2i=0": [(8, 4)] * 3,  # bypass 0.5: gate_only loses half the effect
        "image_loss=4+t2i=1": [(2, 0), (4, 0), (6, 0)],
    }
    giveaway = {0: [0.9, 0.8, 0.7], 4: [0.1, 0.3, 0.2]}  # by image_loss, per seed
    for run in study.runs:
        gate, only = through[run.cell][run.seed]
        image_loss = dict(run.levels)["image_loss"]
        curve = [0.2, 0.5, 0.9, 0.9, 0.9] if run.seed < 2 else [0.1, 0.2, 0.3, 0.4, 0.5]
        _fabricate(run.folder(tmp_path), (ones, changed(gate), changed(only), zeros), giveaway=giveaway[image_loss][run.seed], curve=curve)
    table = write_table(study, tmp_path, n_resamples=500).set_index("cell")
    assert list(table.index) == [f"image_loss={a}+t2i={b}" for a in (0, 4) for b in (0, 1)]
    assert list(table["factor"].unique()) == ["image_loss+t2i"] and table.loc["image_loss=4+t2i=0", "level"] == "4+0"
    assert table["bar"].tolist() == [True, False, False, False]
    assert table.loc["image_loss=0+t2i=1", "through"] == 0.5 and table.loc["image_loss=0+t2i=1", "through_ci_low"] < 0.3
    assert table["converged"].tolist() == ["2/3"] * 4
    assert table.loc["image_loss=4+t2i=1", "through"] == pytest.approx(0.5, abs=1e-12)
    row = table.loc["image_loss=4+t2i=1"]
    assert row["through_detectable"] == pytest.approx(2.8 * (row["through_ci_high"] - row["through_ci_low"]) / 3.92, abs=1e-12)
    assert row["giveaway_mean"] == pytest.approx(0.2, abs=1e-12) and row["curve_accuracy_mean"] == pytest.approx(0.7667, abs=1e-4)

    effects = pd.read_csv(tmp_path / "study_effects.csv", dtype={"low": str, "high": str}).set_index(["factor", "measure"])
    assert len(effects) == 2 * 9 and set(effects["task"]) == {"narrowgate_smoke_vqa"}

    def welch(a, b):
        a, b = np.asarray(a), np.asarray(b)
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
        half = t.ppf(0.975, df) * np.sqrt(va + vb)
        return b.mean() - a.mean(), b.mean() - a.mean() - half, b.mean() - a.mean() + half

    give = effects.loc[("image_loss", "giveaway")]
    low, high = giveaway[0] * 2, giveaway[4] * 2  # each seed's value in both t2i cells
    assert (give["low"], give["high"], give["n_low"], give["n_high"]) == ("0", "4", 6, 6)
    assert (give["mean_low"], give["mean_high"]) == pytest.approx((0.8, 0.2), abs=1e-12)
    assert (give["difference"], give["ci_low"], give["ci_high"]) == pytest.approx(welch(low, high), abs=1e-12)
    share = effects.loc[("t2i", "through")]  # t2i 0: 1,1,1,1,1,1; t2i 1: 0.5 x3, 0.25, 0.5, 0.75
    assert (share["difference"], share["ci_low"], share["ci_high"]) == pytest.approx(
        welch([1.0] * 6, [0.5] * 3 + [0.25, 0.5, 0.75]), abs=1e-12
    )
    assert effects.loc[("t2i", "bypass"), "difference"] == pytest.approx(-0.25, abs=1e-12)
    markdown = (tmp_path / "study.md").read_text()
    assert "| image_loss | t2i | task |" in markdown and "| 0 | 0 | narrowgate_smoke_vqa | 0 1 2 |" in markdown
    assert "## Main effects" in markdown and "| image_loss | giveaway fraction | 0 → 4 | 0.800 (6) | 0.200 (6) | **-0.600 [" in markdown
    assert "aliased" not in markdown  # a full factorial
    paths = write_plots(table.reset_index(), study, tmp_path)
    assert [p.name for p in paths] == ["main_effects.png", "learning_curves.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
