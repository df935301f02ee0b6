"""What an analysis returns (``Result``) and how it is written: its numbers as CSV and JSON, its plot as
PNG, each file atomically."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from narrowgate.core.files import write_atomic


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


def write_results(out: Path, name: str, table: pd.DataFrame, summary: dict, figure) -> dict[str, Path]:
    """``out/<name>.csv`` (the table), ``out/<name>.json`` (summary plus the table's rows) and
    ``out/<name>.png`` (the figure, closed afterwards)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120, bbox_inches="tight")
    document = {**summary, "rows": json.loads(table.to_json(orient="records"))}
    contents = {
        "csv": table.to_csv(index=False).encode(),
        "json": (json.dumps(document, indent=2) + "\n").encode(),
        "png": png.getvalue(),
    }
    paths = {}
    for kind, data in contents.items():
        paths[kind] = out / f"{name}.{kind}"
        write_atomic(paths[kind], data)
    plt.close(figure)
    return paths
