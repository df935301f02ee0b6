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

Importing this module does not import ``datasets``. A missing copy is an error naming the folder, never a silent download. Nothing installed is edited.
``check_data`` runs before any model loads (the grid, the ``lmms_eval`` launcher): it lists every
source the requested tasks need that is missing, with where to put it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

ENV_VAR = "NARROWGATE_DATA_DIR"
LAYOUTS = "a save_to_disk folder of that split, or its parquet files in row order"
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

    def data_files_map(self) -> dict[str, str] | None:
        return {self.split: self.data_files} if self.data_files else None


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

# What each task's process_docs hook loads (``provenance.documents`` checks it against what it did load).
# The smoke tasks read packaged files.
TASK_SOURCES: dict[str, tuple[Source, ...]] = {
    "narrowgate_vqav2": (VQAV2_VALIDATION,),
    "narrowgate_vqav2_full": (VQAV2_VALIDATION,),
    "narrowgate_vqav2_instruction": (VQAV2_VALIDATION,),
    "narrowgate_vqav2_full_instruction": (VQAV2_VALIDATION,),
    "narrowgate_coco_cap": (COCO_KARPATHY_TEST, COCO2014_VAL_IMAGES),
    "narrowgate_coco_cap_full": (COCO_KARPATHY_TEST, COCO2014_VAL_IMAGES),
    "narrowgate_flickr30k": (FLICKR30K_TEST,),
    "narrowgate_flickr30k_full": (FLICKR30K_TEST,),
}


class DataMissingError(FileNotFoundError):
    """A source a task needs is neither in ``$NARROWGATE_DATA_DIR`` nor reachable on the hub."""


def check_data(tasks: Iterable[str]) -> None:
    """Before any model loads: every source of ``tasks`` (narrowgate task names; others are ignored) is
    there. One DataMissingError lists all that are missing and where each belongs. Without
    ``$NARROWGATE_DATA_DIR`` the hub (or, offline, the datasets cache) must know each source; only its
    metadata is read here, nothing is downloaded."""
    needed: dict[Source, list[str]] = {}
    for task in tasks:
        for source in TASK_SOURCES.get(task, ()):
            needed.setdefault(source, []).append(task)
    root = os.environ.get(ENV_VAR)
    problems = {source: local_problem(source, root) if root else hub_problem(source) for source in needed}
    missing = [f"  - {s.hub_id} split {s.split!r} (for {', '.join(needed[s])}): {p}" for s, p in problems.items() if p]
    if not missing:
        return
    if root:
        fix = f"put in each folder {LAYOUTS} (see narrowgate_tasks/sources.py), or unset {ENV_VAR}"
    else:
        example = next(s for s, p in problems.items() if p).local_dir("ROOT")
        fix = (
            f"set {ENV_VAR}=ROOT and put each one at ROOT/<hub id>/<split>/ (e.g. {example}/): {LAYOUTS}; "
            f"or let the hub be reached (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset, `huggingface-cli login` "
            f"for gated data)"
        )
    raise DataMissingError("data the tasks need is missing (no model was loaded):\n" + "\n".join(missing) + "\n" + fix)


def local_problem(source: Source, root: str | os.PathLike) -> str | None:
    """Why ``source``'s local copy under ``root`` cannot be read (None: it can)."""
    folder = source.local_dir(root)
    if not folder.is_dir():
        return f"{ENV_VAR}={root} but {folder} does not exist"
    if not (folder / "state.json").is_file() and not any(folder.rglob("*.parquet")):
        return f"{folder} holds neither a save_to_disk dataset (state.json) nor .parquet files"
    return None


def hub_problem(source: Source) -> str | None:
    """Why the hub (or, offline, the datasets cache) cannot give ``source`` (None: it can)."""
    import datasets

    try:
        datasets.load_dataset_builder(source.hub_id, data_files=source.data_files_map(), revision=source.revision)
    except Exception as error:  # offline without a cached copy, gated, unknown, no network
        offline = " (the hub is offline and the datasets cache has no copy)" if datasets.config.HF_HUB_OFFLINE else ""
        return f"{type(error).__name__}: {error}{offline}"
    return None


def load_source(source: Source) -> datasets.Dataset:
    """The split ``source`` names: from ``$NARROWGATE_DATA_DIR`` when set, else from the hub (cached)."""
    import datasets

    root = os.environ.get(ENV_VAR)
    if root:
        ds = load_local(source, root)
    else:
        try:
            ds = datasets.load_dataset(
                source.hub_id, data_files=source.data_files_map(), revision=source.revision, split=source.split
            )
        except (ConnectionError, FileNotFoundError) as error:  # offline, unknown or gated
            raise DataMissingError(
                f"{source.hub_id} split {source.split!r} could not be loaded from the hub: {error}; with a local "
                f"copy, set {ENV_VAR}=ROOT and put at {source.local_dir('ROOT')}/ {LAYOUTS}"
            ) from error
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
    import datasets

    problem = local_problem(source, root)
    if problem is not None:
        raise DataMissingError(
            f"{problem}; put there a local copy of {source.hub_id} split {source.split!r}: {LAYOUTS} "
            f"(or unset {ENV_VAR})"
        )
    folder = source.local_dir(root)
    if (folder / "state.json").is_file():
        return datasets.load_from_disk(str(folder))
    parquet = sorted(folder.rglob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=[str(path) for path in parquet], split="train")


def load_packaged(name: str, folder: str = "smoke") -> datasets.Dataset:
    """A fixture data set shipped in the package (``data/<folder>/<name>.parquet``, written by
    ``make_<folder>_data``: ``make_smoke_data``, ``make_scenes_data``)."""
    import datasets

    path = PACKAGE_DATA / folder / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m narrowgate_tasks.make_{folder}_data`")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    file = str(path.relative_to(PACKAGE_DATA.parent.parent))
    LOADED.append({"file": file, "fingerprint": ds._fingerprint, "rows": len(ds)})
    return ds
