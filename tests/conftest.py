"""Shared fixtures: tiny checkpoints of every family (written once per session) and small test images.

Tests never touch the network: the Hugging Face offline switches are set before anything imports
transformers or datasets.
"""

from __future__ import annotations

import os

# before any import that may pull in huggingface_hub (the interventions package imports transformers)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One thread in this process and in every subprocess a test starts (CLI runs, torchrun): greedy decoding
# on random tiny models has near-ties that a different reduction order (thread count) can flip, and the
# tests compare outputs across processes. Tiny models gain nothing from more threads anyway.
os.environ["OMP_NUM_THREADS"] = "1"

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from narrowgate.tiny import TINY_FAMILIES  # noqa: E402

FAMILY_NAMES: list[str] = list(TINY_FAMILIES)
torch.set_num_threads(1)

# The modules with real lmms-eval / grid / torchrun runs, slowest first. setup.cfg runs the suite on
# pytest-xdist workers one module at a time (--dist loadfile, so module fixtures run once) in collection
# order (--no-loadscope-reorder): starting these first keeps one of them from being the last thing left.
# A scheduling hint only: a module missing here just starts later.
SLOW_FIRST = (
    "test_wrappers.py",
    "test_grid.py",
    "test_leaderboard.py",
    "test_batched.py",
    "test_study.py",
    "test_java.py",
    "test_tasks_metrics.py",
    "test_auto_family.py",
    "test_adapter.py",
    "test_tiny.py",
    "test_analyses_toys.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: order within a module kept


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Callable[..., Path]:
    """``tiny_dir(family, seed=0)``: the directory of that tiny checkpoint, written on first use."""
    from narrowgate.tiny import save

    cache: dict[tuple[str, int], Path] = {}

    def get(family: str, seed: int = 0) -> Path:
        key = (family, seed)
        if key not in cache:
            cache[key] = save(family, tmp_path_factory.mktemp(f"tiny-{family}-{seed}"), seed=seed)
        return cache[key]

    return get


def make_images() -> list:
    """Four small RGB images that differ in colours, shape and size (square, wide, tall), drawn the same
    way every time; the wide and tall ones give anyres / aspect-preserving processors different runs."""
    from PIL import Image, ImageDraw

    specs = [
        # (width, height), background, foreground, shape
        ((32, 32), (255, 255, 255), (220, 30, 30), "ellipse"),
        ((48, 32), (20, 20, 20), (40, 90, 230), "rectangle"),
        ((32, 48), (128, 128, 128), (30, 200, 60), "triangle"),
        ((40, 40), (250, 240, 200), (240, 200, 20), "ellipse"),
    ]
    images = []
    for (width, height), background, foreground, shape in specs:
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
        if shape == "triangle":
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (width // 2, box[1])], fill=foreground)
        else:
            getattr(draw, shape)(box, fill=foreground)
        images.append(image)
    return images


@pytest.fixture(scope="session")
def images() -> list:
    """See ``make_images``; copy an image before changing it, the list is shared by the session."""
    return make_images()


@pytest.fixture(scope="module")
def pair_batch(tiny_dir, images) -> Callable:
    """``pair_batch(family)``: (tiny model, inputs, layouts) of a same-size image pair, built once per module."""
    from tiny_cases import load, same_size_pair

    cache: dict[str, tuple] = {}

    def get(family: str) -> tuple:
        if family not in cache:
            tiny = load(tiny_dir, family)
            inputs = tiny.inputs(same_size_pair(images))
            cache[family] = tiny, inputs, tiny.layouts(inputs)
        return cache[family]

    return get
