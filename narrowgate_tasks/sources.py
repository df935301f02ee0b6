"""Where narrowgate's task documents come from: hub datasets by default, local copies on request.

Every narrowgate task loads its documents in its ``process_docs`` hook (``narrowgate_tasks.utils``)
through ``load_source``; the YAML's own ``dataset_path`` is a one-row placeholder file. That keeps the
data choice, the paper's subsets and the offline switch in one place that works the same for the
``lmms-eval`` CLI, ``simple_evaluate`` and every model type, and downloads only the split a task needs.

Offline use: set ``NARROWGATE_DATA_DIR=ROOT``. Each source is then read from ``ROOT/<hub id>/<split>/``,
which must hold either

- a ``save_to_disk`` folder of that split (``load_dataset(hub_id, split=split).save_to_disk(...)``; a
  whole ``DatasetDict`` saved to ``ROOT/<hub id>`` gives the same layout), or
- that split's parquet files, named so that their paths sort in the hub's row order (as the hub's
  shard names do), subfolders included.

A missing copy is an error naming the folder, never a silent download. Nothing installed is edited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets

ENV_VAR = "NARROWGATE_DATA_DIR"
PACKAGE_DATA = Path(__file__).parent / "data"

# What the current process_docs hook loaded, in order (read by ``provenance.documents``).
LOADED: list[dict] = []


@dataclass(frozen=True)
class Source:
    """One split of one hub dataset; ``data_files`` (a pattern inside the repo) and ``revision`` limit the
    download to that split."""

    hub_id: str
    split: str
    data_files: str | None = None
    revision: str | None = None

    def local_dir(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.hub_id / self.split


# VQAv2 validation, 214,354 questions in the official question-file order. The authors' code loads this
# copy (paper_experiments/Tab1_AblationVQA.py: "lmms-lab/VQAv2"; HuggingFaceM4/VQAv2 commented out).
VQAV2_VALIDATION = Source("lmms-lab/VQAv2", "validation", data_files="data/validation-*")
# COCO Karpathy test (5,000 images, Karpathy's order, raw reference sentences): the authors' copy. It
# holds image URLs only, so the images come from the COCO 2014 validation images below, by COCO id.
COCO_KARPATHY_TEST = Source("yerevann/coco-karpathy", "test", data_files="data/test-*")
COCO2014_VAL_IMAGES = Source("lmms-lab/COCO-Caption", "val", data_files="data/val-*")
# The authors' Flickr30k: nlphuji/flickr30k "test" (one split holding every image). Its loading script
# no longer runs (datasets >= 4), so the hub's own parquet export of that script's output is read.
FLICKR30K_TEST = Source("nlphuji/flickr30k", "test", data_files="TEST/test/*.parquet", revision="refs/convert/parquet")


def load_source(source: Source) -> datasets.Dataset:
    """The split ``source`` names: from ``$NARROWGATE_DATA_DIR`` when set, else from the hub (cached)."""
    root = os.environ.get(ENV_VAR)
    if root:
        ds = load_local(source, root)
    else:
        ds = datasets.load_dataset(
            source.hub_id,
            data_files={source.split: source.data_files} if source.data_files else None,
            revision=source.revision,
            split=source.split,
        )
    LOADED.append(
        {
            "hub_id": source.hub_id,
            "split": source.split,
            "data_files": source.data_files,
            "revision": source.revision or "default branch (not pinned)",
            "copy": str(source.local_dir(root)) if root else "hub (datasets cache)",
            "fingerprint": ds._fingerprint,
            "rows": len(ds),
        }
    )
    return ds


def load_local(source: Source, root: str | os.PathLike) -> datasets.Dataset:
    """``source``'s local copy under ``root`` (layouts in the module docstring)."""
    folder = source.local_dir(root)
    expected = (
        f"a local copy of {source.hub_id} split {source.split!r}: a save_to_disk folder of that split, "
        f"or its parquet files in row order"
    )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{ENV_VAR}={root} but {folder} does not exist; put there {expected} (or unset {ENV_VAR})"
        )
    if (folder / "state.json").is_file():
        return datasets.load_from_disk(str(folder))
    parquet = sorted(folder.rglob("*.parquet"))
    if not parquet:
        raise FileNotFoundError(
            f"{folder} holds neither a save_to_disk dataset (state.json) nor .parquet files; put there {expected}"
        )
    return datasets.load_dataset("parquet", data_files=[str(path) for path in parquet], split="train")


def load_packaged(name: str) -> datasets.Dataset:
    """A fixture data set shipped in the package (``data/smoke/<name>.parquet``, see ``make_smoke_data``)."""
    path = PACKAGE_DATA / "smoke" / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m narrowgate_tasks.make_smoke_data`")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    file = str(path.relative_to(PACKAGE_DATA.parent.parent))
    LOADED.append({"file": file, "fingerprint": ds._fingerprint, "rows": len(ds)})
    return ds
