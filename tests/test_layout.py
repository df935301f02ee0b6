"""Layouts: pure position bookkeeping on hand-made input_ids, and on every family's real processor."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_cases import PROMPTS, TINY_CASES, load

from interventions import FamilyIds, ImageSpan, find_layouts

PAD, BOS, TEXT, START, IMG, BREAK, GATE, EOF_ = 0, 1, 2, 3, 4, 5, 6, 7
CHAMELEON_LIKE = FamilyIds("chameleon_like", image=(IMG,), start=(START,), gate=(GATE,))
EMU3_LIKE = FamilyIds("emu3_like", image=(IMG,), start=(START,), gate=(EOF_, GATE))
LLAVA_LIKE = FamilyIds("llava_like", image=(IMG,), start=(), gate=())
PIXTRAL_LIKE = FamilyIds("pixtral_like", image=(IMG, BREAK), start=(), gate=(GATE,))


def layouts(rows, ids, mask=None):
    return find_layouts(torch.tensor(rows), None if mask is None else torch.tensor(mask), ids)


def test_one_image():
    (layout,) = layouts([[BOS, START, IMG, IMG, IMG, GATE, TEXT, TEXT]], CHAMELEON_LIKE)
    assert layout.spans == (ImageSpan(start=(1,), image=range(2, 5), gate=(5,)),)
    assert (layout.row, layout.length, layout.first) == (0, 8, 0)
    assert layout.text_after == range(6, 8)
    assert json.loads(json.dumps(layout.to_dict()))["spans"] == [{"start": [1], "image": [2, 5], "gate": [5]}]


def test_left_padding_shifts_positions_but_not_the_key():
    row = [BOS, START, IMG, IMG, GATE, TEXT]
    padded = [PAD, PAD] + row
    alone, in_batch = layouts([row], CHAMELEON_LIKE)[0], layouts([padded, [BOS] * 8], CHAMELEON_LIKE, [[0, 0] + [1] * 6, [1] * 8])[0]
    assert in_batch.first == 2 and in_batch.spans[0].image == range(4, 6) and in_batch.spans[0].gate == (6,)
    assert alone.key == in_batch.key
    assert alone.key != layouts([[BOS, START, IMG, IMG, GATE, BOS]], CHAMELEON_LIKE)[0].key


def test_padding_tokens_are_skipped_even_if_they_look_like_images():
    (layout,) = layouts([[IMG, IMG, BOS, START, IMG, GATE, TEXT]], CHAMELEON_LIKE, [[0, 0, 1, 1, 1, 1, 1]])
    assert layout.spans == (ImageSpan(start=(3,), image=range(4, 5), gate=(5,)),)


def test_several_images_and_emu3_header_and_two_gate_tokens():
    row = [BOS, START, TEXT, TEXT, IMG, IMG, EOF_, GATE, TEXT, START, TEXT, IMG, EOF_, GATE, TEXT]
    (layout,) = layouts([row], EMU3_LIKE)
    assert layout.spans == (
        ImageSpan(start=(1, 2, 3), image=range(4, 6), gate=(6, 7)),
        ImageSpan(start=(9, 10), image=range(11, 12), gate=(12, 13)),
    )


def test_families_without_end_token_and_with_break_tokens():
    (llava,) = layouts([[BOS, IMG, IMG, TEXT, TEXT]], LLAVA_LIKE)
    assert llava.spans == (ImageSpan(start=(), image=range(1, 3), gate=(3,)),)
    (pixtral,) = layouts([[BOS, IMG, IMG, BREAK, IMG, IMG, GATE, TEXT]], PIXTRAL_LIKE)
    assert pixtral.spans == (ImageSpan(start=(), image=range(1, 6), gate=(6,)),)


def test_rows_without_images_have_no_spans():
    (layout,) = layouts([[BOS, TEXT, TEXT]], CHAMELEON_LIKE)
    assert layout.spans == () and layout.text_after == range(3)


@pytest.mark.parametrize(
    "row, ids, message",
    [
        ([BOS, START, IMG, IMG, TEXT], CHAMELEON_LIKE, r"row 1: the image run at positions 2-3 is not followed by its gate \(expected ids \[6\], found \[2\]\)"),
        ([BOS, START, IMG, IMG], CHAMELEON_LIKE, "found the end of the row"),
        ([BOS, START, IMG, EOF_, TEXT], EMU3_LIKE, r"expected ids \[7, 6\], found \[7, 2\]"),
        ([BOS, TEXT, IMG, GATE, TEXT], CHAMELEON_LIKE, "row 1, position 2 .token id 4.: image tokens without a start-of-image token"),
        ([BOS, START, TEXT, TEXT], CHAMELEON_LIKE, "row 1, position 1 .token id 3.: start-of-image token with no image tokens"),
        ([BOS, TEXT, GATE, TEXT], CHAMELEON_LIKE, "row 1, position 2 .token id 6.: gate token with no image run before it"),
        ([BOS, TEXT, IMG, IMG], LLAVA_LIKE, "ends the row, so it has no gate"),
        ([BOS, START, TEXT, GATE, IMG, GATE], CHAMELEON_LIKE, "gate token with no image run before it"),
    ],
)
def test_malformed_rows_name_the_row_and_what_was_found(row, ids, message):
    with pytest.raises(ValueError, match=message):
        layouts([[BOS] * len(row), row], ids)


def test_padding_inside_a_row_is_an_error():
    with pytest.raises(ValueError, match="row 0: padding at position 2 inside the row"):
        layouts([[BOS, TEXT, PAD, TEXT]], CHAMELEON_LIKE, [[1, 1, 0, 1]])


def test_start_token_too_far_from_the_image():
    with pytest.raises(ValueError, match="without a start-of-image token"):
        layouts([[START] + [TEXT] * 17 + [IMG, GATE]], CHAMELEON_LIKE)


@pytest.mark.parametrize("family", TINY_CASES)
def test_real_processors(tiny_dir, images, family):
    tiny = load(tiny_dir, family)
    inputs = tiny.inputs([images[0], images[1]])
    ids = tiny.ids
    input_ids = inputs["input_ids"]
    for layout in find_layouts(input_ids, inputs["attention_mask"], ids):
        row = input_ids[layout.row].tolist()
        (span,) = layout.spans
        assert all(row[p] in ids.image for p in span.image)
        assert sum(token in ids.image for token in row) == len(span.image)
        assert tuple(row[p] for p in span.gate) == (ids.gate or (row[span.gate[0]],))
        if ids.start:
            assert row[span.start[0]] in ids.start and span.start[-1] == span.image.start - 1
        assert inputs["attention_mask"][layout.row, : layout.first].sum() == 0
        assert inputs["attention_mask"][layout.row, layout.first:].all()
    alone = [tiny.inputs([image], prompts=(prompt,)) for image, prompt in zip(images[:2], PROMPTS)]
    keys = [find_layouts(one["input_ids"], None, ids)[0].key for one in alone]
    assert [layout.key for layout in find_layouts(input_ids, inputs["attention_mask"], ids)] == keys
