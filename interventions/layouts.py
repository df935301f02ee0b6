"""Where the images and their gates sit in a batch of prompts.

A layout is pure position bookkeeping: it is computed once from ``input_ids`` (never from hard-coded
ids: the family's token strings are resolved against the tokenizer by ``FamilySpec.token_ids``), and
its positions are indices into the padded row, which are also the KV-cache positions that the
attention knockout sees, for the prompt and for every generated token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from .families import FamilyIds

# Longest run of tokens allowed between a start-of-image token and the image run (Emu3 writes its
# ``h*w<|image token|>`` header there: at most 4+1+4+1 tokens for digits tokenized one by one).
MAX_HEADER = 16


@dataclass(frozen=True)
class ImageSpan:
    """One image in one row.

    start: the start-of-image token and any header after it (Emu3: ``<|image start|>`` h ``*`` w
        ``<|image token|>``); empty for families without an opener.
    image: the contiguous run of image tokens (Pixtral's row breaks included).
    gate: the token(s) right after the run that form the gate (Emu3: end-of-frame AND end-of-image).
    """

    start: tuple[int, ...]
    image: range
    gate: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "start": list(self.start),
            "image": [self.image.start, self.image.stop],
            "gate": list(self.gate),
        }


@dataclass(frozen=True)
class Layout:
    """The images of one batch row.

    row: the batch row. length: the padded row length. first: the first non-padding position.
    key: identifies the example for per-example random choices (default: a digest of the row's
        unpadded token ids), so that they do not depend on batch composition or padding; a caller
        that has a document id can set it with ``dataclasses.replace``.
    """

    row: int
    length: int
    first: int
    spans: tuple[ImageSpan, ...]
    key: str = field(default="")

    @property
    def text_after(self) -> range:
        """Positions after the last gate of the row (the prompt text that reads the image)."""
        return range(self.spans[-1].gate[-1] + 1 if self.spans else self.first, self.length)

    def to_dict(self) -> dict:
        return {
            "row": self.row,
            "length": self.length,
            "first": self.first,
            "key": self.key,
            "spans": [span.to_dict() for span in self.spans],
        }


def find_layouts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, ids: FamilyIds
) -> tuple[Layout, ...]:
    """One Layout per row of ``input_ids`` (B, S); positions are indices into the padded row.

    Padding (``attention_mask == 0``) is skipped. A malformed row raises ValueError naming the row
    and what was found: image tokens without a start token, a start token without image tokens, an
    image run with no gate after it (a truncated image), or a gate token with no image before it.
    """
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape {tuple(input_ids.shape)}"
        )
    rows = input_ids.tolist()
    masks = attention_mask.tolist() if attention_mask is not None else [None] * len(rows)
    return tuple(_row_layout(b, row, mask, ids) for b, (row, mask) in enumerate(zip(rows, masks)))


def batch_layouts(layouts) -> tuple[Layout, ...]:
    """Check that ``layouts`` describe one batch, one per row in row order (positions are per row, so
    a layout applied to the wrong row would cut the wrong edges)."""
    layouts = tuple(layouts)
    for index, layout in enumerate(layouts):
        if layout.row != index:
            raise ValueError(
                f"layouts[{index}] describes batch row {layout.row}; pass one layout per row in row order "
                f"(for layouts computed row by row, use dataclasses.replace(layout, row={index}))"
            )
    return layouts


def _row_layout(b: int, row: list[int], mask: list[int] | None, ids: FamilyIds) -> Layout:
    valid = [True] * len(row) if mask is None else [bool(m) for m in mask]
    if not any(valid):
        raise ValueError(f"row {b}: the attention mask hides every token")
    first = valid.index(True)
    image, start, gate = set(ids.image), set(ids.start), set(ids.gate)

    def where(pos: int) -> str:
        return f"row {b}, position {pos} (token id {row[pos]})"

    spans: list[ImageSpan] = []
    claimed_until = first  # positions before this belong to earlier spans or to padding
    pos = first
    while pos < len(row):
        if not valid[pos]:
            if any(valid[pos:]):
                # Left padding only precedes the row; a hole inside it breaks the KV-position bookkeeping.
                raise ValueError(f"row {b}: padding at position {pos} inside the row; only left padding is supported")
            break
        if row[pos] not in image:
            if row[pos] in gate and not ids.gate_is_text:
                raise ValueError(f"{where(pos)}: gate token with no image run before it")
            pos += 1
            continue
        run_start = pos
        while pos < len(row) and valid[pos] and row[pos] in image:
            pos += 1
        run = range(run_start, pos)

        opener: tuple[int, ...] = ()
        if start:
            lo = max(claimed_until, run_start - 1 - MAX_HEADER)
            found = [p for p in range(run_start - 1, lo - 1, -1) if row[p] in start]
            if not found:
                raise ValueError(
                    f"{where(run_start)}: image tokens without a start-of-image token before them "
                    f"(expected one of ids {sorted(start)} within {MAX_HEADER + 1} tokens)"
                )
            header = range(found[0] + 1, run_start)
            if any(row[p] in gate for p in header):
                raise ValueError(f"{where(found[0])}: a gate token between the start-of-image token and the image")
            opener = tuple(range(found[0], run_start))

        if ids.gate:
            stop = pos + len(ids.gate)
            got = row[pos:stop] if stop <= len(row) and all(valid[pos:stop]) else row[pos:len(row)]
            if tuple(got) != ids.gate:
                raise ValueError(
                    f"row {b}: the image run at positions {run.start}-{run.stop - 1} is not followed by its gate "
                    f"(expected ids {list(ids.gate)}, found {got or 'the end of the row'}); truncated image?"
                )
            gate_pos = tuple(range(pos, stop))
        else:
            if pos >= len(row):
                raise ValueError(
                    f"row {b}: the image run at positions {run.start}-{run.stop - 1} ends the row, so it has no gate "
                    "(the first token after the run); add text after the image"
                )
            gate_pos = (pos,)
        spans.append(ImageSpan(start=opener, image=run, gate=gate_pos))
        claimed_until = gate_pos[-1] + 1
        pos = claimed_until

    claimed = {p for span in spans for p in span.start}
    stray = [p for p in range(first, len(row)) if valid[p] and row[p] in start and p not in claimed]
    if stray:
        raise ValueError(f"{where(stray[0])}: start-of-image token with no image tokens after it (truncated image?)")

    unpadded = ",".join(str(t) for t, v in zip(row, valid) if v).encode()
    key = hashlib.blake2b(unpadded, digest_size=8).hexdigest()
    return Layout(row=b, length=len(row), first=first, spans=tuple(spans), key=key)
