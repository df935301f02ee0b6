"""Files every output folder needs: atomic writes (a reader or a rerun after a crash never sees half a
file, which is what lets every narrowgate command resume) and config YAML read safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write next to ``path`` and move the file into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


def read_yaml(path: Path, kind: str, error: type[Exception]) -> Any:
    """The parsed YAML of a ``kind`` config (grid, study); ``error`` names the file when it cannot be read."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as reason:
        raise error(f"cannot read {kind} config {path}: {reason}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as reason:
        raise error(f"{path}: not valid YAML: {reason}") from None
