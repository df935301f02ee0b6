"""Data parallel grids: the processes of ``torchrun`` / ``accelerate launch``, or just this one.

Each rank loads its own model copy and runs every cell; lmms-eval's evaluator shards the documents and
gathers the results on rank 0, which alone writes (cells, markers, grid.json, tiny checkpoints). Rank 0
also decides what is left to do, so that every rank runs the same cells in the same order: the
evaluator's collectives pair up only then.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


class Ranks:
    """This process's place among the grid's processes; one process when WORLD_SIZE is unset or 1."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world_size > 1 and not dist.is_initialized():
            # The group lmms-eval's evaluator would otherwise create on its torchrun path, created now so
            # that the ranks can agree before the first evaluation.
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a barrier too)."""
        if self.world_size == 1:
            return value
        shared = [value if self.is_main else None]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]

    def first_error(self, error: str | None) -> str | None:
        """The first rank's error message, if any rank had one (a barrier too)."""
        if self.world_size == 1:
            return error
        errors: list[str | None] = [None] * self.world_size
        dist.all_gather_object(errors, error)
        return next((e for e in errors if e is not None), None)
