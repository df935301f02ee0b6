"""What an analysis returns (``Result``) and how it is written: its numbers as CSV and JSON, its plot as
PNG, each file atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Result:
    """One analysis's findings: ``table`` (one row per measurement), ``summary`` (JSON-ready values),
    ``figure`` (a matplotlib figure) and ``report`` (a few lines for a reader, printed by the CLI)."""

    name: str
    table: pd.DataFrame
    summary: dict
    figure: object
    report: str = ""

    def write(self, out: Path, summary: dict | None = None) -> dict[str, Path]:
        """``out/NAME.{csv,json,png}``; ``summary`` (default: the result's own) goes into the JSON."""
        return write_results(out, self.name, self.table, self.summary if summary is None else summary, self.figure)


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results(out: Path, name: str, table: pd.DataFrame, summary: dict, figure) -> dict[str, Path]:
    """``out/<name>.csv`` (the table), ``out/<name>.json`` (summary plus the table's rows) and
    ``out/<name>.png`` (the figure, closed afterwards)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = {
        "csv": _atomic(out / f"{name}.csv", lambda tmp: table.to_csv(tmp, index=False)),
        "json": _atomic(
            out / f"{name}.json",
            lambda tmp: Path(tmp).write_text(
                json.dumps({**summary, "rows": json.loads(table.to_json(orient="records"))}, indent=2) + "\n"
            ),
        ),
        "png": _atomic(out / f"{name}.png", lambda tmp: figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")),
    }
    plt.close(figure)
    return paths
