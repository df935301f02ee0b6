"""The image-token structure of any transformers image-text-to-text model, read from its config and processor.

The seven declared families (``families.py``) spell their tokens out; every other checkpoint gets a
FamilySpec derived here from what transformers itself knows: the image token the model replaces with
vision features (``config.image_token_id``), the row-break token a processor writes inside the run
(Pixtral's ``[IMG_BREAK]``), and the start/end-of-image tokens that processors, tokenizers or configs
name. The gate is the end-of-image token where the model has one, otherwise the first token after the
run, as for LLaVA. Anything missing or ambiguous is an error naming the model argument that declares
it (``image_token=``, ``start_token=``, ``gate_token=``), and ``check_probe`` verifies the derived
spec on what the processor really writes for square, wide, tall and large images, so a wrong guess
never runs. A processor that writes one image as several runs with different tags between them
(tiles: Aya Vision, Idefics3) is refused there: no declaration can make them one span, and the
conditions' one image span with one gate would not hold.
"""

from __future__ import annotations

from itertools import pairwise

from .families import FamilySpec
from .layouts import find_layouts

# Where transformers keeps each token, by attribute name: (object, attribute), object being "config",
# "processor" or "tokenizer"; a config attribute holds an id, the others a token string.
IMAGE_SOURCES = (("config", "image_token_id"), ("config", "image_token_index"), ("processor", "image_token"))
BREAK_SOURCES = (("processor", "image_break_token"), ("config", "image_break_token_id"))
START_SOURCES = (
    ("processor", "start_image_token"),
    ("processor", "start_of_img_token"),  # Aya Vision
    ("processor", "image_start_token"),
    ("processor", "boi_token"),
    ("tokenizer", "boi_token"),
    ("tokenizer", "start_image_token"),
    ("config", "vision_start_token_id"),
    ("config", "boi_token_id"),
    ("config", "boi_token_index"),
    ("config", "image_start_token_id"),
)
END_SOURCES = (
    ("processor", "end_image_token"),
    ("processor", "end_of_img_token"),  # Aya Vision
    ("processor", "image_end_token"),
    ("processor", "eoi_token"),
    ("tokenizer", "eoi_token"),
    ("tokenizer", "end_image_token"),
    ("config", "vision_end_token_id"),
    ("config", "eoi_token_id"),
    ("config", "eoi_token_index"),
    ("config", "image_end_token_id"),
)


# Model types whose image tokens attend bidirectionally (to each other, or to the whole prompt prefix): the
# knockout engine's cuts are exact for causal attention only.
BIDIRECTIONAL = {
    "gemma3": "Gemma 3's image tokens attend to each other bidirectionally",
    "paligemma": "PaliGemma's image and prompt prefix attend to each other bidirectionally",
}


def check_attention(config) -> None:
    """Refuse a model whose attention the knockout engine cannot cut exactly (see the model table in the README)."""
    if config.model_type in BIDIRECTIONAL:
        raise ValueError(
            f"{BIDIRECTIONAL[config.model_type]}; narrowgate's knockouts are exact for causal attention only, "
            "so this model is not supported"
        )
    layer_types = getattr(config.get_text_config(), "layer_types", None) or ()
    if "sliding_attention" in layer_types:
        raise ValueError(
            f"{config.model_type}: {layer_types.count('sliding_attention')} of {len(layer_types)} language-model layers "
            "use sliding-window attention, which narrowgate's knockouts do not support"
        )


def model_class_name(config) -> str:
    """The transformers image-text-to-text class of ``config`` (what ``AutoModelForImageTextToText`` loads)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[config.model_type]
    except KeyError:
        raise ValueError(
            f"model type {config.model_type!r} is not an image-text-to-text model in transformers "
            "(AutoModelForImageTextToText cannot load it); narrowgate's generic family needs one"
        ) from None


def _found(sources, config, processor) -> list[tuple[str, str]]:
    """(token string, "object.attribute") for every source that names a token, in source order."""
    objects = {"config": config, "processor": processor, "tokenizer": processor.tokenizer}
    found = []
    for owner, attribute in sources:
        value = getattr(objects[owner], attribute, None)
        if owner == "config" and isinstance(value, int):
            value = processor.tokenizer.convert_ids_to_tokens(value)
        if isinstance(value, str) and value:
            found.append((value, f"{owner}.{attribute}"))
    return found


def _at_most_one(name: str, kind: str, sources, config, processor, declare: str) -> tuple[str, ...]:
    """The one token the sources agree on, () if none names one; disagreeing sources are an error."""
    found = _found(sources, config, processor)
    tokens = tuple(dict.fromkeys(token for token, _ in found))
    if len(tokens) > 1:
        where = ", ".join(f"{token!r} ({source})" for token, source in found)
        raise ValueError(
            f"{name}: several candidate {kind} tokens: {where}; declare the right one with {declare}=TOKEN"
        )
    return tokens


def derive_spec(
    name: str,
    config,
    processor,
    image_token: str | None = None,
    start_token: str | None = None,
    gate_token: str | None = None,
) -> FamilySpec:
    """A FamilySpec for ``config`` + ``processor``; declared tokens win over derived ones.

    ``gate_token`` may list several tokens with ``+`` (``<|extra_201|>+<|image end|>``); ``start_token=none``
    or ``gate_token=none`` declare that the model has no such token (the gate is then the first token
    after the run).
    """

    def declared(value: str | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        return () if value.lower() == "none" else tuple(value.split("+"))

    check_attention(config)
    # The config's id is the one the model replaces with vision features; a processor's image_token may be
    # the prompt placeholder instead (Gemma 3's is <start_of_image>), so the first source found wins.
    image = declared(image_token) or tuple(token for token, _ in _found(IMAGE_SOURCES, config, processor)[:1])
    if not image:
        raise ValueError(
            f"{name}: no image token found (looked at {', '.join(f'{o}.{a}' for o, a in IMAGE_SOURCES)}); "
            "declare it with image_token=TOKEN"
        )
    breaks = tuple(token for token, _ in _found(BREAK_SOURCES, config, processor) if token not in image)
    start = declared(start_token)
    if start is None:
        start = _at_most_one(name, "start-of-image", START_SOURCES, config, processor, "start_token")
    gate = declared(gate_token)
    if gate is None:
        gate = _at_most_one(name, "end-of-image", END_SOURCES, config, processor, "gate_token")
    overlap = (set(start) | set(gate)) & set(image + breaks)
    if overlap or set(start) & set(gate):
        raise ValueError(
            f"{name}: token(s) {sorted(overlap or set(start) & set(gate))} would both open/close and fill the image "
            f"(image {image + breaks}, start {start}, gate {gate}); declare image_token=, start_token= and gate_token="
        )
    spec = FamilySpec(
        name=name,
        model_class=model_class_name(config),
        placeholder=getattr(processor, "image_token", None) or image[0],
        image_tokens=image + breaks,
        start_tokens=start,
        gate_tokens=gate,
    )
    spec.token_ids(processor.tokenizer)  # every token must exist in the vocabulary
    return spec


# The probe images every derived layout is checked on (width, height): square, wide, tall and large, so that
# a processor that tiles, splits or adds a thumbnail for some shapes or sizes is caught at load time.
PROBE_SIZES = ((224, 224), (448, 224), (224, 448), (1344, 1008))


class TiledImageError(ValueError):
    """A processor writes one image as several runs of image tokens: not supported, whatever is declared."""


def tiled_error(spec: FamilySpec, size: tuple[int, int], between: list[list[str]]) -> TiledImageError:
    """The refusal of a processor that writes one image as several runs of image tokens, ``between`` them
    the tokens that differ from gap to gap (tile tags), so no declaration can make them one span."""
    tags = ", ".join(repr(" ".join(tokens)) for tokens in between[:3]) + (", ..." if len(between) > 3 else "")
    return TiledImageError(
        f"{spec.name}: a {size[0]}x{size[1]} image becomes {len(between) + 1} runs of image tokens: the processor "
        f"tiles or splits it, with different tokens between the runs ({tags}); narrowgate needs each image as one run "
        "between its start and its gate, and no image_token=, start_token= or gate_token= declaration can join runs "
        "whose separators differ, so this model is not supported"
    )


def image_runs(row: list[int], image_ids: set[int]) -> list[range]:
    """The maximal runs of image-token positions in ``row``."""
    runs: list[range] = []
    for position, token in enumerate(row):
        if token not in image_ids:
            continue
        if runs and runs[-1].stop == position:
            runs[-1] = range(runs[-1].start, position + 1)
        else:
            runs.append(range(position, position + 1))
    return runs


def check_probe(spec: FamilySpec, processor, sizes: tuple[tuple[int, int], ...] = PROBE_SIZES) -> FamilySpec:
    """Check ``spec`` on the processor's real output for a grey image of each of ``sizes``; returns it with
    the placeholder that a prompt must write for one image (the image token alone, or start + image + end
    where the chat template writes the start and end tokens, as Qwen2-VL's does).

    Raises ValueError when an image is not one run of image tokens between its start and gate: tiles with
    tags between them or several runs per image (not supported, whatever is declared), a run cut by text,
    image tokens outside the run (a wrong derivation: the error names the declarations).
    """
    from dataclasses import replace

    from PIL import Image

    ids = spec.token_ids(processor.tokenizer)
    image_id = ids.image[0]

    def layout_of(placeholder: str, size: tuple[int, int]):
        inputs = processor(text=[f"a {placeholder} b"], images=[Image.new("RGB", size, (128, 128, 128))], return_tensors="pt")
        row = inputs["input_ids"][0].tolist()
        runs = image_runs(row, set(ids.image))
        gaps = [row[a.stop : b.start] for a, b in pairwise(runs)]
        if len({tuple(gap) for gap in gaps}) > 1:  # one repeated separator (a row break) could be declared instead
            raise tiled_error(spec, size, [processor.tokenizer.convert_ids_to_tokens(gap) for gap in gaps])
        (layout,) = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
        if len(layout.spans) != 1:
            raise ValueError(f"one image became {len(layout.spans)} runs of image tokens")
        outside = [p for p, token in enumerate(row) if token == image_id and p not in layout.spans[0].image]
        if outside:
            raise ValueError(f"image tokens at {outside} lie outside the image's run")
        return layout

    candidates = [spec.placeholder]
    if spec.start_tokens or spec.gate_tokens:
        candidates.append("".join(spec.start_tokens) + spec.placeholder + "".join(spec.gate_tokens))
    errors = []
    for placeholder in candidates:
        try:
            layout_of(placeholder, sizes[0])
        except TiledImageError:
            raise
        except ValueError as error:
            errors.append(f"prompt {placeholder!r}: {error}")
            continue
        for size in sizes[1:]:
            try:
                layout_of(placeholder, size)
            except TiledImageError:
                raise
            except ValueError as error:
                raise ValueError(f"{spec.name}: a {size[0]}x{size[1]} image: {error}") from error
        return replace(spec, placeholder=placeholder)
    raise ValueError(
        f"{spec.name}: the derived layout (image {spec.image_tokens}, start {spec.start_tokens}, gate "
        f"{spec.gate_tokens}) does not match what the processor writes for an image: {'; '.join(errors)}. "
        "Declare image_token=, start_token= and gate_token= (or use a model narrowgate does not support yet)"
    )
