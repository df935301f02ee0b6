"""narrowgate's tasks and groups as their YAMLs declare them, read without lmms-eval (``yaml.safe_load``;
``!function`` tags stay strings, nothing is imported), so that the checks that run before any model loads
(Java, data) can expand the names a user gives: groups, shell patterns, other suites' tasks left out."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

TASKS_DIR = Path(__file__).parent


class _Loader(yaml.SafeLoader):
    """safe_load that reads lmms-eval's ``!function`` tags as plain strings (nothing is imported)."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


@cache
def index() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(task -> its config with includes merged, group -> its tasks) from the YAMLs of this folder."""

    def config(path: Path) -> dict:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
        included = data.pop("include", None)
        return {**config(TASKS_DIR / included), **data} if included else data

    tasks: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        data = config(path)
        if "group" in data:
            groups[data["group"]] = list(data.get("task", []))
        elif "task" in data:
            tasks[data["task"]] = data
    return tasks, groups


def expand(requested: Iterable[str]) -> list[str]:
    """narrowgate's tasks among ``requested`` (task or group names, shell patterns), groups expanded, in
    order and without repeats; names that are not narrowgate's are left out."""
    tasks, groups = index()
    found: dict[str, None] = {}
    for pattern in requested:
        for name in [*fnmatch.filter(groups, pattern), *fnmatch.filter(tasks, pattern)]:
            found.update(dict.fromkeys(t for t in groups.get(name, [name]) if t in tasks))
    return list(found)
