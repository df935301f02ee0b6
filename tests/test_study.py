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


def test_changed_recipe_under_a_finished_run_is_an_error(mini, tmp_path: Path, capsys) -> None:
    output, _, _ = mini
    copy = tmp_path / "copy"
    shutil.copytree(output / "runs", copy / "runs")
    config = tmp_path / "changed.yaml"
    config.write_text(MINI.read_text().replace("steps: 20", "steps: 21"))
    assert main(["study", "emergence", str(config), "--output", str(copy)]) == 2
    assert "holds another recipe than the config's" in capsys.readouterr().err


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
        ({"seeds": [0], "job": 2}, "job: unknown key; valid keys here: description, base, factors, seeds,"),
    ],
)
def test_bad_config_names_the_key(data, message) -> None:
    with pytest.raises(StudyError) as error:
        plan(data, Path("bad.yaml"))
    assert str(error.value).startswith(f"bad.yaml: {message}")


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
        base, gate, only, cut = scores[checkpoint.id]
        folder = checkpoint.folder(tmp_path)
        folder.mkdir(parents=True)
        by_condition = {"baseline": base, "gate_ablated": gate, "gate_only": only, "image_ablated": cut}
        task = {"metric": "vqa_accuracy", "means": {k: float(np.mean(v)) for k, v in by_condition.items()}, "scores": by_condition}
        (folder / "gate_share.json").write_text(json.dumps({"tasks": {"narrowgate_smoke_vqa": task}}))
        (folder / "attention.json").write_text(json.dumps({"gate_vs_image": 0.1}))
        (folder / "patching.json").write_text(json.dumps({"flip_fraction": 0.0}))
        (folder / "gap.json").write_text(json.dumps({"gap_cosine": 0.1, "gap_homogeneity": 0.9}))
        (folder / "overlap.json").write_text(json.dumps({"gate_chi": 0.5, "image_chi": 0.4}))
    table = write_table(study, tmp_path, n_resamples=2000).set_index("cell")
    assert changed_at_most(0, 96) == pytest.approx(1 - 0.05 ** (1 / 96)) and round(changed_at_most(0, 96), 3) == 0.031
    base = table.loc["base"]
    assert (base["through_changed"], base["through_answers"]) == (0, 8) and bool(base["shares_defined"])
    assert base["image_effect"] == 0.5 and base["image_effect_ci_low"] > 0
    faint = table.loc["image_loss=0"]
    assert not faint["shares_defined"] and np.isnan(faint["through"]) and faint["image_effect_ci_low"] <= 0
    assert table.loc["reference/planted", "through"] == 1.0
    markdown = (tmp_path / "study.md").read_text()
    rows = {line.split(" | ")[0] + " " + line.split(" | ")[1]: line for line in markdown.splitlines() if line.startswith("| ")}
    assert f"0 of 8 answers changed: ≤ {changed_at_most(0, 8):.1%}" in rows["| base "]
    assert "0.00 [0.00, 0.00]" not in rows["| base "]
    assert rows["| image_loss 0"].count("undefined: effect CI contains 0") == 2
    assert "| 0.50 [" in rows["| base "] and "Clopper-Pearson" in markdown
    assert rows["| base "].endswith("| 0.10 (0.10–0.10) | 0.90 (0.90–0.90) | 0.50 (0.50–0.50) | 0.40 (0.40–0.40) |")
