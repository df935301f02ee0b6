"""The model under analysis: any family's checkpoint loaded through its lmms-eval wrapper (so prompts,
processor options and layouts are exactly the benchmark's), with the few passes the analyses need.

Positions are read per row from its Layout; the token groups follow docs/protocol.md §2: ``gate`` (Emu3:
both end tokens), ``last`` (the image token before the gate), ``image`` (the other image tokens),
``special`` (start-of-image tokens and special tokens such as bos before the image) and ``after`` (the
prompt tokens after the gate). Every pass runs in batches with a progress bar and keeps only what it
reduces (vectors at chosen positions, last-position distributions), never every layer's full tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from interventions import Condition, Layout, intervene, make_condition
from interventions.session import language_model
from narrowgate_tasks.prompts import model_request, model_variant

from .plotting import model_name

# The shipped toy checkpoints, by name (``--model toy``): (family, folder)
TOYS = {"toy": "toy_chameleon", "planted": "toy_chameleon_planted"}


@dataclass(frozen=True)
class Groups:
    """One row's positions per token group (a single image per prompt), and ``after``: the prompt
    tokens after the gate (the text that reads the image)."""

    gate: tuple[int, ...]
    last: tuple[int, ...]
    image: tuple[int, ...]
    special: tuple[int, ...]
    after: tuple[int, ...]


def groups_of(layout: Layout, input_ids: Sequence[int], special_ids: set[int]) -> Groups:
    """The token groups of a row with exactly one image (``input_ids``: the row's padded ids)."""
    if len(layout.spans) != 1:
        raise ValueError(f"row {layout.row}: the analyses take one image per prompt, found {len(layout.spans)}")
    (span,) = layout.spans
    before = range(layout.first, span.start[0] if span.start else span.image.start)
    special = tuple(p for p in before if input_ids[p] in special_ids) + span.start
    return Groups(
        gate=span.gate,
        last=(span.image[-1],),
        image=tuple(span.image[:-1]),
        special=special,
        after=tuple(layout.text_after),
    )


def toy_name(pretrained: str) -> str | None:
    """``toy`` or ``planted`` when ``pretrained`` is that shipped toy's folder, else None."""
    from narrowgate.toy import TOY_CHECKPOINT

    folder = Path(pretrained).resolve()
    return next((name for name, sub in TOYS.items() if folder == (TOY_CHECKPOINT.parent / sub).resolve()), None)


def resolve_model(model: str, family: str | None) -> tuple[str, str]:
    """(family, checkpoint) of ``--model``: a shipped toy's name or a checkpoint path with ``--family``."""
    from narrowgate.toy import FAMILY, TOY_CHECKPOINT

    if model in TOYS:
        path = TOY_CHECKPOINT.parent / TOYS[model]
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"the shipped toy {model!r} is missing from {path}; reinstall narrowgate with its package data")
        if family not in (None, FAMILY):
            raise ValueError(f"--model {model} is a {FAMILY} checkpoint; drop --family {family}")
        return FAMILY, str(path)
    if family is None:
        raise ValueError(f"--model {model}: give --family (one of the registered families) for a checkpoint path")
    return family, model


class Subject:
    """A loaded checkpoint with the passes the analyses share."""

    def __init__(self, family: str, pretrained: str, device: str | None = None, dtype: str | None = None, batch_size: int = 16):
        from model_wrappers import load_model

        self.lm = load_model(family, pretrained, device=device, dtype=dtype)
        self.family, self.pretrained, self.batch_size = family, pretrained, batch_size
        self.name = toy_name(pretrained) or model_name(pretrained)  # short, for titles
        self.model = self.lm.model
        self.tokenizer = self.lm.tokenizer
        self.layers = language_model(self.model).layers
        self.num_layers = len(self.layers)
        self.special_ids = set(self.tokenizer.all_special_ids) - set(self.lm.family_ids.image)

    def prompt(self, request: str, image_last: bool = False) -> str:
        """The family's prompt with one image before ``request`` (the benchmarks' order), or after it
        (``image_last``: the text, then the image, as in a caption->image generation prompt)."""
        request = model_request(request, model_variant(self.lm.model_name))  # as narrowgate's tasks give it to this model
        if image_last:
            return self.lm.encoder.format_prompt(request + self.lm.encoder.spec.placeholder, 0)
        return self.lm.encoder.format_prompt(request, 1)

    def encode(self, images: Sequence[Image.Image], requests: Sequence[str], keys: Sequence[str], image_last: bool = False):
        """(inputs, layouts, groups) of one batch: each image with its request in the family's prompt."""
        prompts = [self.prompt(request, image_last) for request in requests]
        inputs, layouts = self.lm.encoder.encode(prompts, [[image] for image in images], [f"example {k}" for k in keys], list(keys))
        ids = inputs["input_ids"].tolist()
        return inputs, layouts, [groups_of(layout, ids[layout.row], self.special_ids) for layout in layouts]

    def batches(self, images, requests, desc: str, image_last: bool = False) -> Iterator[tuple[range, dict, tuple[Layout, ...], list[Groups]]]:
        """The examples in batches of ``batch_size`` (with a progress bar): (indices, inputs, layouts, groups)."""
        for start in tqdm(range(0, len(images), self.batch_size), desc=desc, unit="batch", leave=False):
            rows = range(start, min(start + self.batch_size, len(images)))
            keys = [str(i) for i in rows]
            inputs, layouts, groups = self.encode([images[i] for i in rows], [requests[i] for i in rows], keys, image_last)
            yield rows, inputs, layouts, groups

    @contextmanager
    def under(self, condition: Condition | None, layouts: Sequence[Layout], reference: bool = False) -> Iterator[None]:
        """The condition (None: none at all) bound for the forwards inside the block."""
        if condition is None and not reference:
            yield
            return
        with intervene(self.model, condition or make_condition("baseline"), layouts, reference=reference):
            yield

    def forward(self, inputs: dict) -> torch.Tensor:
        """Next-token probabilities at the last prompt position (rows are left-padded), (B, vocab) float32."""
        with torch.inference_mode():
            logits = self.model(**inputs, use_cache=False).logits[:, -1]
        return torch.softmax(logits.float(), dim=-1)

    @contextmanager
    def layer_outputs(self, pick: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
        """Call ``pick(layer, hidden)`` with every decoder layer's output hidden states (B, S, D) during
        the forwards inside the block; the caller keeps only what it reduces."""

        def hook(index, module, args, output):
            pick(index, output[0] if isinstance(output, tuple) else output)

        with ExitStack() as stack:
            for index, layer in enumerate(self.layers):
                stack.callback(layer.register_forward_hook(lambda m, a, o, i=index: hook(i, m, a, o)).remove)
            yield

    def answer_id(self, word: str) -> int:
        """The first token of an answer word (what greedy decoding must produce first)."""
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the tokenizer encodes the answer {word!r} as no token")
        return ids[0]

    def describe(self) -> dict:
        return {"family": self.family, "pretrained": self.pretrained, "num_layers": self.num_layers}


def vectors(
    subject: Subject, images, requests, condition: Condition | None, select: dict[str, Callable[[Groups, int], Sequence[int]]],
    desc: str, image_last: bool = False,
) -> dict[str, torch.Tensor]:
    """For each name in ``select``: (n, layers, D) float32, the mean of each row's layer outputs at the
    positions ``select[name](groups, example index)`` picks (rows with no such position are NaN);
    ``image_last``: the image after the request (``Subject.prompt``)."""
    out = {name: torch.full((len(images), subject.num_layers, subject.model.config.get_text_config().hidden_size), float("nan")) for name in select}
    for rows, inputs, layouts, groups in subject.batches(images, requests, desc, image_last):
        picks = {name: [list(fn(g, i)) for g, i in zip(groups, rows)] for name, fn in select.items()}

        def keep(layer: int, hidden: torch.Tensor) -> None:
            for name, rows_positions in picks.items():
                for b, positions in enumerate(rows_positions):
                    if positions:
                        out[name][rows[b], layer] = hidden[b, positions].float().mean(dim=0).cpu()

        with subject.layer_outputs(keep), subject.under(condition, layouts):
            subject.forward(inputs)
    return out
