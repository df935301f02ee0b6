"""Cell folders: where a cell's files go, what is done (resume) and the grid.json status file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narrowgate.core.files import write_json_atomic
from narrowgate.grid.config import Cell, GridConfig

CELL_FILE = "cell.json"
GRID_FILE = "grid.json"
LOG_FILE = "grid.log"  # what the libraries print while the cells run
CHECKPOINTS_DIR = "_checkpoints"
PARTIAL_SUFFIX = ".partial"


def cell_dir(output: Path, cell: Cell) -> Path:
    return Path(output, cell.model.name, cell.condition.dirname, cell.task)


def read_done(directory: Path) -> dict[str, Any] | None:
    """The stored record of a finished cell folder, or None if the cell is not finished."""
    marker = directory / CELL_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))


def iter_done_cells(output: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished cell folder under ``output`` with its cell.json record, in a stable order."""
    found = []
    for marker in sorted(Path(output).rglob(CELL_FILE)):
        if any(part.endswith(PARTIAL_SUFFIX) for part in marker.parts):
            continue
        found.append((marker.parent, json.loads(marker.read_text(encoding="utf-8"))))
    return found


@dataclass
class CellStatus:
    cell: str
    status: str  # "done", "skipped" (done before this run), "failed", "pending"
    seconds: float | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass
class GridReport:
    """What one run of the grid did: the statuses of the selected cells (in grid order); ``others`` are
    the config's cells outside this run's --only selection, as recorded before."""

    output: Path
    statuses: list[CellStatus]
    others: list[CellStatus] = field(default_factory=list)

    @property
    def failed(self) -> list[CellStatus]:
        return [s for s in self.statuses if s.status == "failed"]

    @property
    def evaluated(self) -> list[str]:
        return [s.cell for s in self.statuses if s.status == "done"]


def differences(stored: Any, asked: Any, key: str = "") -> list[str]:
    """Where two cell records differ, as ``key: stored X, now Y`` lines."""
    if isinstance(stored, dict) and isinstance(asked, dict):
        return [
            line
            for k in dict.fromkeys([*stored, *asked])
            for line in differences(stored.get(k), asked.get(k), f"{key}.{k}" if key else k)
        ]
    return [] if stored == asked else [f"{key}: stored {stored!r}, now {asked!r}"]


def write_grid_file(output: Path, config: GridConfig, limit: int | None, report: GridReport) -> None:
    order = {cell.id: i for i, cell in enumerate(config.cells())}
    write_json_atomic(
        output / GRID_FILE,
        {
            "config": str(config.path),
            "description": config.description,
            "limit": limit,
            "tasks": list(config.tasks),
            "models": [m.record() for m in config.models],
            "conditions": [c.record() for c in config.conditions],
            "cells": [vars(s) for s in sorted([*report.statuses, *report.others], key=lambda s: order[s.cell])],
        },
    )


def other_cells(output: Path, config: GridConfig, selected: dict[str, CellStatus]) -> list[CellStatus]:
    """Statuses of the cells this run does not touch, as an earlier run recorded them (or as found on
    disk), so that grid.json keeps describing the whole grid across ``--only`` runs."""
    grid_file = output / GRID_FILE
    previous = {}
    if grid_file.is_file():
        previous = {c["cell"]: c for c in json.loads(grid_file.read_text(encoding="utf-8")).get("cells", [])}
    others = []
    for cell in config.cells():
        if cell.id in selected:
            continue
        if cell.id in previous:
            others.append(
                CellStatus(**{f: previous[cell.id].get(f) for f in ("cell", "status", "seconds", "error", "traceback")})
            )
        else:
            others.append(CellStatus(cell.id, "skipped" if read_done(cell_dir(output, cell)) else "pending"))
    return others
