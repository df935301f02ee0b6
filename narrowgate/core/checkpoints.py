"""A checkpoint that fails to load because one of its weight files is damaged (a download cut short, a
full disk) should say which file: safetensors' own error ("Error while deserializing header:
HeaderTooLarge") names none, and a sharded 34B checkpoint has a dozen."""

from __future__ import annotations

from pathlib import Path


class CorruptCheckpointError(OSError):
    """A weight file of a local checkpoint cannot be read."""


def corrupt_files(folder: str | Path) -> list[tuple[Path, str]]:
    """Each ``*.safetensors`` file under ``folder`` whose header cannot be read, with the reason."""
    from safetensors import safe_open

    damaged = []
    for path in sorted(Path(folder).rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as error:
            damaged.append((path, f"{type(error).__name__}: {error}"))
    return damaged


def name_corrupt_file(error: BaseException, pretrained: str | None) -> BaseException:
    """``error`` itself, or, when it came from safetensors and ``pretrained`` is a local folder, a
    CorruptCheckpointError naming the damaged files and what to do."""
    if pretrained is None or "safetensor" not in f"{type(error).__module__} {type(error).__name__} {error}".lower():
        return error
    if not Path(pretrained).is_dir():
        return error
    damaged = corrupt_files(pretrained)
    if not damaged:
        return error
    listed = "; ".join(f"{path} ({reason})" for path, reason in damaged)
    named = CorruptCheckpointError(f"damaged weight file(s) in {pretrained}: {listed}; download or copy them again")
    named.__cause__ = error  # its traceback, for --verbose and grid.json
    return named
