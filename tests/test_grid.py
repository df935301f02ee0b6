"""The grid: config schema and its errors; end to end on tiny checkpoints with resume after a failure."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from interventions import CONDITIONS
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
        "baseline", "gate_ablated", "gate_only", "image_ablated", "last_image_ablated", "random_image_ablated"
    ]
    assert [c.seed for c in config.conditions if c.repeated] == [0, 1, 2]
    assert len(config.cells()) == 7 * 8 * 3
    assert all(m.model_args["dtype"] == "bfloat16" for m in config.models)


def test_smoke_config_covers_every_condition():
    config = load_config(REPO / "configs" / "smoke.yaml")
    assert set(config.tasks) == {"narrowgate_smoke_vqa", "narrowgate_smoke_caption"}
    assert {c.name for c in config.conditions} == set(CONDITIONS)
    assert all(m.tiny_seed is not None for m in config.models)
    assert any(c.repeated for c in config.conditions)


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
        ({"models__0__family": "chamelon"}, r"models\[0\]\.family: unknown family 'chamelon'; known families: chameleon, emu3"),
        ({"models__0__pretrained": "x/y"}, r"models\[0\]: give exactly one of `pretrained:`"),
        ({"models__0__tiny": DELETE}, r"models\[0\]: give exactly one of `pretrained:`"),
        ({"models__0__tiny": {"sede": 1}}, r"models\[0\]\.tiny\.sede: unknown key; valid keys here: seed"),
        ({"models__0__name": "org/model"}, r"models\[0\]\.name: expected letters, digits"),
        ({"models__0__model_args": {"condition": "gate_ablated"}}, r"models\[0\]\.model_args\.condition: is set by the grid"),
        ({"models__0__model_args": {"device": ["cpu"]}}, r"models\[0\]\.model_args\.device: expected a single value"),
        ({"models__0__colour": 1}, r"models\[0\]\.colour: unknown key; valid keys here: name, family, pretrained"),
        ({"conditions__0": "gate_ablatd"}, r"conditions\[0\]: unknown condition 'gate_ablatd'; valid conditions: baseline"),
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
    path.write_text(textwrap.dedent("""
        tasks: [narrowgate_smoke_vqa]
        conditions: [baseline]
        models: [{name: m, family: nope, tiny: true}]
    """))
    assert main(["grid", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "models[0].family: unknown family 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
