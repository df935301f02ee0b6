"""Loading a checkpoint for a narrowgate model: the family's transformers class and ``AutoProcessor``, on
the right device in the right dtype, one full copy per process under data parallelism.

Data parallel runs (``torchrun`` / ``accelerate launch``) put one copy on each process's device
(``LOCAL_RANK``); lmms-eval's evaluator shards the documents and gathers the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interventions.session import REFERENCE, configured_attention

DTYPES: dict[str, torch.dtype | str] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "auto": "auto",
}


def checkpoint_folder(pretrained: str) -> bool:
    """Whether ``pretrained`` names a local checkpoint (then it must be one) rather than a hub id.

    transformers reads any other string as a hub id, so a mistyped path would surface as a complaint
    about repo-id syntax or the network; a path-like name that is not a checkpoint folder fails here instead.
    """
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"pretrained={pretrained}: the folder {path.resolve()} holds no config.json, so it is not a "
                "transformers checkpoint (write one with save_pretrained, or `narrowgate tiny`)"
            )
        return True
    if path.exists():
        raise NotADirectoryError(f"pretrained={pretrained} is a file; give the checkpoint's folder")
    if pretrained.startswith(("/", ".", "~")) or pretrained.count("/") > 1 or "\\" in pretrained:
        raise FileNotFoundError(f"pretrained={pretrained}: no checkpoint folder at {path.resolve()}")
    return False


@dataclass(frozen=True)
class Placement:
    """Where this process runs: its device and its place among the data-parallel processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1


def placement(device: str | None, device_map: str | None) -> Placement:
    """This process's device: ``device``, or its own GPU under data parallelism, or cuda when there is one."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and device_map is not None:
        raise ValueError("device_map spreads one model over several devices; do not combine it with data parallel runs")
    if world_size > 1 and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return Placement(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), rank, world_size)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: model (eval mode), processor, tokenizer (left padding), where inputs go, the
    number of decoder layers and the attention path the engine runs (``interventions.session``)."""

    model: Any
    processor: Any
    device: torch.device
    num_layers: int
    attention: str

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def reference(self) -> bool:
        """Whether the model runs narrowgate's eager post-softmax reference (attn_implementation=eager)."""
        return self.attention == REFERENCE


def load_checkpoint(
    name: str,
    pretrained: str,
    model_class: str,
    where: Placement,
    dtype: str | None = None,
    device_map: str | None = None,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
) -> Checkpoint:
    """``model_class.from_pretrained(pretrained)`` and its processor; ``name`` (the lmms-eval model) names errors.

    dtype: a key of ``DTYPES`` (default bfloat16 on cuda, float32 elsewhere). ``device_map`` places the
    model itself (inputs then go where its embeddings are); otherwise it moves to ``where.device``.
    """
    if dtype is None:
        dtype = "bfloat16" if where.device.type == "cuda" else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    import transformers

    local = checkpoint_folder(pretrained)
    try:
        model = getattr(transformers, model_class).from_pretrained(
            pretrained,
            dtype=DTYPES[dtype],
            device_map=device_map,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        ).eval()
    except OSError as error:
        if local:
            raise
        raise OSError(
            f"{name}: pretrained={pretrained} is not a local checkpoint folder (no folder "
            f"{Path(pretrained).resolve()}) and could not be loaded as a Hugging Face hub id"
            f"{' (HF_HUB_OFFLINE=1: only already downloaded models load)' if os.environ.get('HF_HUB_OFFLINE') else ''}: "
            f"{error}"
        ) from error
    if device_map is None:
        model.to(where.device)
    processor = transformers.AutoProcessor.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    processor.tokenizer.padding_side = "left"  # generation continues every row at the same position
    return Checkpoint(
        model=model,
        processor=processor,
        device=where.device if device_map is None else model.device,
        num_layers=model.config.get_text_config().num_hidden_layers,
        # eager runs the post-softmax reference, sdpa the fast path; anything else fails here, not at the first sample
        attention=configured_attention(model),
    )
