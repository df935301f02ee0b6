"""narrowgate is a guest in the user's lmms-eval: it adds names and tasks, and changes none of lmms-eval's.

The built-in registry is rebuilt from lmms-eval's own manifests (without any entry point) and compared
with the live registry, into which lmms-eval has loaded narrowgate's entry point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model_wrappers.registry import condition_names, family_names, model_names
from narrowgate import launcher
from narrowgate.core.evaluation import plain_error, tasks_dir


def builtin_manifests() -> dict:
    from lmms_eval.models import _build_builtin_manifests

    return {manifest.model_id: manifest for manifest in _build_builtin_manifests()}


def test_no_builtin_model_is_shadowed():
    from lmms_eval.models import MODEL_REGISTRY_V2

    builtins = builtin_manifests()
    builtin_names = set(builtins) | {alias for m in builtins.values() for alias in m.aliases}
    assert {"llava", "llava_onevision", "qwen2_vl"} <= builtin_names  # the names narrowgate once took over
    assert not builtin_names & set(model_names())
    for name, manifest in builtins.items():
        assert MODEL_REGISTRY_V2.get_manifest(name) == manifest, f"{name} no longer resolves to lmms-eval's class"
    assert MODEL_REGISTRY_V2.resolve("llava").class_path == "lmms_eval.models.simple.llava.Llava"
    names = set(MODEL_REGISTRY_V2.list_model_names())
    assert set(model_names()) <= names  # the entry point is installed and loaded
    assert len(model_names()) == len(family_names()) * len(condition_names())
    assert not (set(family_names()) - builtin_names) & names  # no bare family name of narrowgate's own


def test_launcher_passes_every_lmms_eval_model_through():
    from lmms_eval.models import MODEL_REGISTRY_V2

    for name in MODEL_REGISTRY_V2.list_model_names():  # lmms-eval's and narrowgate's
        launcher.check_model(name, "")
    for name, hint in [("chameleon", "the baseline is chameleon_baseline"), ("llava_gate_ablate", "llava_gate_ablated")]:
        with pytest.raises(ValueError, match=f"unknown narrowgate model '{name}'.*{hint}"):
            launcher.check_model(name, "")


def test_tasks_and_models_are_listed(capsys):
    """``lmms_eval tasks list`` and ``lmms_eval models`` show narrowgate's; ``python -m narrowgate_tasks``
    prints the folder for lmms-eval's own ``lmms-eval --include_path``."""
    assert launcher.main(["tasks", "list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"narrowgate", "narrowgate_vqav2", "narrowgate_coco_cap", "narrowgate_smoke_caption"} <= set(listed)
    assert "mme" in listed  # lmms-eval's own tasks stay listed
    assert launcher.main(["models"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"llava", "qwen2_vl", "chameleon_baseline", "emu3_gate_ablated"} <= set(listed)
    folder = subprocess.run(
        [sys.executable, "-m", "narrowgate_tasks"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(folder) == Path(tasks_dir()).resolve()
    assert (Path(folder) / "narrowgate_vqav2.yaml").is_file()


def test_retried_errors_show_their_cause():
    """lmms-eval wraps dataset loading in tenacity retries; the launcher and the grid report the cause."""
    from tenacity import RetryError, retry, stop_after_attempt

    @retry(stop=stop_after_attempt(2))
    def load():
        raise FileNotFoundError("NARROWGATE_DATA_DIR=/data but /data/x does not exist")

    with pytest.raises(RetryError) as error:
        load()
    shown = plain_error(error.value)
    assert isinstance(shown, FileNotFoundError) and "/data/x does not exist" in str(shown)
    other = ValueError("not wrapped")
    assert plain_error(other) is other


def test_a_refusal_is_one_line_without_lmms_evals_traceback(tmp_path, capfd):
    """A damaged weight file: one FAILED line naming it; lmms-eval's traceback only with --verbosity DEBUG."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(Path(__file__).resolve().parents[1] / "narrowgate" / "assets" / "toy_chameleon", damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:4000])
    args = ["--model", "chameleon_baseline", "--model_args", f"pretrained={damaged}", "--tasks", "narrowgate_smoke_vqa"]
    assert launcher.main([*args, "--limit", "1"]) == 1
    output = "".join(capfd.readouterr())
    assert "Traceback" not in output, output[-3000:]
    assert (
        f"lmms_eval: FAILED: chameleon_baseline on narrowgate_smoke_vqa: CorruptCheckpointError: damaged weight "
        f"file(s) in {damaged}: {weights} (SafetensorError: " in output
    )
    with pytest.raises(Exception, match="damaged weight file"):
        launcher.main([*args, "--limit", "1", "--verbosity", "DEBUG"])
