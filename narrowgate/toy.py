"""The toy native model: a real Chameleon trained from scratch on the shapes world, shipped with the package.

Random tiny checkpoints prove that the machinery runs, but they score zero under every condition. This
one answers the smoke task's questions (colour, shape, position of one coloured shape), so what a
condition does to it is a measured result. ``narrowgate train-toy --out DIR`` rebuilds it; the copy in
``narrowgate/assets/toy_chameleon`` (``TOY_CHECKPOINT``) was written by that command with the defaults.

The recipe (``ToyRecipe``; the same seed gives the same weights on the same software and thread count):

- Architecture: ``ChameleonForConditionalGeneration`` with the tiny Chameleon's tokenizer and processor
  (``narrowgate.tiny``: 32-px images, a 3-level VQ, 8 x 8 = 64 image tokens, gate ``<eoss>``) and a
  larger text model. Images enter through the VQ tokenizer, as in the real model.
- Image tokens: the VQ encoder is frozen, as Chameleon's is, with weights set by hand
  (``set_patch_encoder``) so that it reads each 4 x 4-pixel patch's ink and colour, and the codebook is
  fitted by k-means to those features of training drawings (``fit_codebook``). The random encoder
  was tried first: its codes hide colour (see ``set_patch_encoder``).
- Data: jittered drawings (``shapes.sample_specs(jitter=True)``) of every colour/shape/position
  combination except the 6 ``HELD_OUT_COMBOS`` (all six occur in the smoke set, so its score includes
  unseen combinations). A drawing pixel-identical to an evaluated image (the packaged smoke drawings,
  the ``seen`` and ``held_out`` test drawings) is dropped, so no evaluated image is ever trained on.
- Prompts: exactly what the Chameleon wrapper gives the processor (text completion,
  ``<image>{question}\\nAnswer the question using a single word or phrase. Answer:``; captions after
  ``<image>Provide a one-sentence caption for the provided image.``).
- Loss: next-token cross-entropy on the answer word and end-of-sequence, on one reference caption per
  image (``captions``), and on the image tokens (``image_loss``, weight 1 by default: a "native"
  objective, the model also learns to continue images; 0 turns it off). All prompts of a drawing
  share one row (``pack``).
- Training is step-based, not time-based, so a seed gives the same model on a fast or a busy machine;
  it uses ``threads`` CPU threads (results can differ in the last bits with another thread count).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model_wrappers.registry import CONDITION_NAMES
from narrowgate_tasks import prompts, shapes

if TYPE_CHECKING:
    import torch
    from transformers import ChameleonForConditionalGeneration, ProcessorMixin

TOY_CHECKPOINT = Path(__file__).parent / "assets" / "toy_chameleon"
FAMILY = "chameleon"
RECIPE_FILE = "toy_recipe.json"
REPORT_FILE = "toy_report.json"

# Combinations never drawn for training: the held-out test set measures compositional generalisation.
N_HELD_OUT, HELD_OUT_SEED = 6, 0
TRAIN_COMBOS, HELD_OUT_COMBOS = shapes.split_combos(N_HELD_OUT, HELD_OUT_SEED)
# Jittered test drawings (in-process measures), from their own random stream.
TEST_SEED, N_TEST = 1_000_003, 96
SPLITS: tuple[str, ...] = ("smoke", "seen", "held_out")
CAPTION_KIND = "caption"


@dataclass(frozen=True)
class ToyRecipe:
    """Everything that determines the toy model. Text-model sizes follow ``narrowgate.tiny.TEXT``'s keys."""

    seed: int = 0
    steps: int = 1500
    batch_images: int = 16  # each image gives one row per question kind, plus a caption row
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    n_train_images: int = 6000
    captions: bool = True
    image_loss: float = 1.0
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    kmeans_images: int = 1000
    kmeans_iters: int = 30
    threads: int = 2

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), type(field.default)
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok and not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"ToyRecipe.{field.name} must be {kind.__name__}, got {value!r}")
        for name in (
            "steps",
            "batch_images",
            "n_train_images",
            "hidden_size",
            "num_hidden_layers",
            "kmeans_images",
            "threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ToyRecipe.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_loss < 0:
            raise ValueError(f"ToyRecipe.image_loss must be >= 0, got {self.image_loss}")


def toy_checkpoint() -> Path:
    """The shipped toy checkpoint's folder; a clear error when the package was installed without it."""
    if not (TOY_CHECKPOINT / "config.json").is_file():
        raise FileNotFoundError(
            f"the toy checkpoint is missing from {TOY_CHECKPOINT}; reinstall narrowgate with its package data or "
            f"rebuild it: narrowgate train-toy --out {TOY_CHECKPOINT}"
        )
    return TOY_CHECKPOINT


# ------------------------------------------------------------------------------------------------ data


def prompt_text(kind: str) -> str:
    """The exact text the Chameleon wrapper gives the processor for a question of ``kind`` (or a caption)."""
    from interventions import family_spec

    request = prompts.CAPTION_REQUEST if kind == CAPTION_KIND else prompts.vqa_request(shapes.question(kind))
    return family_spec(FAMILY).placeholder + request + prompts.completion_suffix(request)


def _derived_seed(purpose: str, seed: int) -> int:
    """Independent random streams per purpose, so a training seed never replays a test set's stream."""
    return int.from_bytes(
        hashlib.blake2b(f"narrowgate-toy:{purpose}:{seed}".encode(), digest_size=8).digest(), "little"
    )


def _pixels(spec: shapes.ShapeSpec) -> bytes:
    return shapes.draw(spec).tobytes()


def eval_specs(split: str) -> list[shapes.ShapeSpec]:
    """The drawings of an evaluation split: ``smoke`` (the packaged smoke set's, canonical), ``seen``
    (jittered, training combinations) or ``held_out`` (jittered, ``HELD_OUT_COMBOS``)."""
    if split == "smoke":
        from narrowgate_tasks.make_smoke_data import N_IMAGES, SEED

        return shapes.sample_specs(N_IMAGES, seed=SEED)
    combos = {"seen": TRAIN_COMBOS, "held_out": HELD_OUT_COMBOS}
    if split not in combos:
        raise ValueError(f"unknown evaluation split {split!r}; valid: {', '.join(SPLITS)}")
    return shapes.sample_specs(
        N_TEST, seed=_derived_seed(f"test-{split}", TEST_SEED), combos=combos[split], jitter=True
    )


def train_specs(recipe: ToyRecipe) -> list[shapes.ShapeSpec]:
    """Training drawings of ``TRAIN_COMBOS``; drawings identical in pixels to any evaluated image are dropped."""
    evaluated = {_pixels(spec) for split in SPLITS for spec in eval_specs(split)}
    specs = shapes.sample_specs(
        recipe.n_train_images, seed=_derived_seed("train", recipe.seed), combos=TRAIN_COMBOS, jitter=True
    )
    return [spec for spec in specs if _pixels(spec) not in evaluated]


def question_items(specs: Sequence[shapes.ShapeSpec]) -> list[tuple[shapes.ShapeSpec, str]]:
    """Every (drawing, question kind) pair: each drawing asked all three questions."""
    return [(spec, kind) for spec in specs for kind in shapes.QUESTION_KINDS]


# ----------------------------------------------------------------------------------------------- model


# The VQ encoder as a fixed patchifier (see set_patch_encoder).
PATCH = 4  # pixels per image token side: 32-px images, two stride-2 downsamples
INK = PATCH * PATCH  # per-pixel ink of a patch, then its mean colour (3 values)
FEATURES = INK + 3
ANCHOR = 100.0  # constant partner channel of every feature channel in the output GroupNorm
SHIFT = 20.0  # keeps the swish after that GroupNorm in its linear range
COLOUR_WEIGHT = 2.0  # colour counts double in the codebook's distances, so colours get codes of their own


def build(recipe: ToyRecipe) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """The untrained toy model and the tiny Chameleon's processor: text weights random from
    ``recipe.seed``; the VQ encoder a patchifier (``set_patch_encoder``), its codebook still unfitted."""
    import torch
    from PIL import Image
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration

    from narrowgate.tiny import BUILDERS

    config, processor = BUILDERS[FAMILY]()
    sizes = {
        name: getattr(recipe, name)
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
        )
    }
    # 64 channels (32 GroupNorm groups of a feature channel and its anchor), no resnet blocks in the levels.
    vq = {**config.vq_config.to_dict(), "base_channels": 64, "num_res_blocks": 0}
    config = ChameleonConfig(**{**config.to_dict(), **sizes, "vq_config": vq})
    torch.manual_seed(recipe.seed)
    model = ChameleonForConditionalGeneration(config)
    blank = Image.new("RGB", (32, 32), shapes.BACKGROUND)
    white = float(processor.image_processor(blank, return_tensors="pt")["pixel_values"].amax())
    set_patch_encoder(model.model.vqmodel, white)
    return model, processor


def set_patch_encoder(vq: torch.nn.Module, white: float) -> None:
    """Make Chameleon's VQ encoder compute, for each 4 x 4-pixel patch, the ink of its 16 pixels (mean
    distance from white over RGB) and the patch's mean distance from white per colour channel.

    Why not keep the random encoder: its output GroupNorm normalises every channel over each image, so
    a colour's magnitude is lost; k-means codes of random features let a linear probe recover the colour
    of held-out drawings only ~72% of the time (~97% from these codes). The architecture is untouched:

    - ``conv_in`` writes ink and the three colour distances into feature channels (even), a constant
      ``ANCHOR`` into their partners (odd); the two downsampling convs gather 2 x 2 sub-pixels into
      separate channels twice (ink) and average colour;
    - the mid resnet and attention blocks add zero (their last convs are zero), so they pass through;
    - ``norm_out`` groups each feature with its constant anchor, which turns its per-image
      normalisation into a near-identity (x minus the image mean of x, scaled by 1 + O(x / ANCHOR));
      its affine part and ``conv_out`` undo the scale and ``SHIFT``, which keeps the swish linear;
    - ``quant_conv`` weighs the colour features by ``COLOUR_WEIGHT``.
    """
    import torch

    encoder = vq.encoder
    channels = encoder.conv_in.out_channels
    feature, anchor = list(range(0, channels, 2)), list(range(1, channels, 2))
    if len(feature) < FEATURES or len(encoder.down) != 3 or any(len(level.block) for level in encoder.down):
        raise ValueError("set_patch_encoder needs 3 VQ levels without resnet blocks and >= 38 channels")
    ink, colour = feature[:INK], feature[INK:FEATURES]
    with torch.no_grad():
        for parameter in vq.parameters():
            parameter.zero_()
        conv = encoder.conv_in  # level 0: ink and colour distance of each pixel
        for c in range(3):
            conv.weight[feature[0], c, 1, 1] = -1 / 3
            conv.weight[feature[1 + c], c, 1, 1] = -1
        conv.bias[feature[:4]] = white
        conv.bias[anchor] = ANCHOR
        conv = encoder.down[0].downsample.conv  # level 1: 2 x 2 sub-pixel inks, mean colour
        for a in range(2):
            for b in range(2):
                conv.weight[feature[2 * a + b], feature[0], a, b] = 1
                for c in range(3):
                    conv.weight[feature[4 + c], feature[1 + c], a, b] = 1 / 4
        conv.bias[anchor] = ANCHOR
        conv = encoder.down[1].downsample.conv  # level 2: 4 x 4 sub-pixel inks (row-major), mean colour
        for a2 in range(2):
            for b2 in range(2):
                for a1 in range(2):
                    for b1 in range(2):
                        conv.weight[ink[PATCH * (2 * a2 + a1) + 2 * b2 + b1], feature[2 * a1 + b1], a2, b2] = 1
                for c in range(3):
                    conv.weight[colour[c], feature[4 + c], a2, b2] = 1 / 4
        conv.bias[anchor] = ANCHOR
        encoder.norm_out.weight[feature] = ANCHOR / 2
        encoder.norm_out.bias[feature] = ANCHOR / 2 + SHIFT
        for k in range(FEATURES):
            encoder.conv_out.weight[k, feature[k], 1, 1] = 1
            vq.quant_conv.weight[k, k, 0, 0] = COLOUR_WEIGHT if k >= INK else 1
        encoder.conv_out.bias[:FEATURES] = -SHIFT


def _pixel_values(processor: ProcessorMixin, specs: Sequence[shapes.ShapeSpec]) -> torch.Tensor:
    images = [shapes.draw(spec) for spec in specs]
    return processor.image_processor(images, return_tensors="pt")["pixel_values"]


def fit_codebook(model: ChameleonForConditionalGeneration, pixel_values: torch.Tensor, iters: int, seed: int) -> None:
    """Set the VQ codebook to k-means centroids (k-means++ start) of the encoder's pre-quantisation
    features of ``pixel_values``. The VQ assigns a feature to its nearest codebook row (Euclidean), the
    distance k-means minimises, so the codes are the features' own clusters. The VQ is then rounded to
    float16, the storage precision, so training sees exactly the codes of the shipped checkpoint.
    """
    import torch

    vq = model.model.vqmodel
    with torch.no_grad():
        features = torch.cat([vq.quant_conv(vq.encoder(batch)) for batch in pixel_values.split(256)])
        points = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        k = vq.quantize.num_embeddings
        generator = torch.Generator().manual_seed(seed)
        centres = points[torch.randint(len(points), (1,), generator=generator)]
        nearest = ((points - centres[0]) ** 2).sum(dim=1)  # squared distance to the nearest centre so far
        for _ in range(1, k):
            # fewer distinct features than codes: every point is a centre already, duplicates are harmless
            weights = nearest if bool(nearest.sum() > 0) else torch.ones_like(nearest)
            centre = points[torch.multinomial(weights, 1, generator=generator)]
            centres = torch.cat([centres, centre])
            nearest = torch.minimum(nearest, ((points - centre) ** 2).sum(dim=1))
        for _ in range(iters):
            assignment = torch.cdist(points, centres).argmin(dim=1)
            counts = torch.bincount(assignment, minlength=k).to(points.dtype)
            sums = torch.zeros_like(centres).index_add_(0, assignment, points)
            centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        vq.quantize.embedding.weight.copy_(centres)
        for parameter in vq.parameters():
            parameter.copy_(parameter.half().float())


def image_tokens(model: ChameleonForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The VQ tokens (vocabulary ids) of each image, (N, 64): what the model embeds in place of ``<image>``."""
    import torch

    with torch.no_grad():
        return torch.cat([model.model.get_image_tokens(batch) for batch in pixel_values.split(256)])


# -------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Templates:
    """Token ids of the training prompts, split where they stop sharing tokens.

    Every prompt is ``prefix`` (bos, start-of-image, ``<image>`` x 64, the gate) followed by the
    request of its kind (``suffixes``), exactly as the processor tokenizes ``prompt_text(kind)``.
    """

    prefix: tuple[int, ...]
    suffixes: dict[str, tuple[int, ...]]  # kind (question kinds and "caption") -> ids after the gate
    answers: dict[str, tuple[int, ...]]  # answer word -> its ids + eos
    captions: dict[shapes.Combo, tuple[tuple[int, ...], ...]]  # combo -> each reference caption's ids + eos
    image_id: int
    pad_id: int


def templates(processor: ProcessorMixin) -> Templates:
    from PIL import Image

    from interventions import family_spec

    tokenizer = processor.tokenizer
    (gate,) = family_spec(FAMILY).token_ids(tokenizer).gate
    blank = Image.new("RGB", (32, 32), shapes.BACKGROUND)
    prefixes, suffixes = set(), {}
    for kind in [*shapes.QUESTION_KINDS, CAPTION_KIND]:
        ids = processor(text=[prompt_text(kind)], images=[blank], return_for_text_completion=True)["input_ids"][
            0
        ].tolist()
        cut = ids.index(gate) + 1
        prefixes.add(tuple(ids[:cut]))
        suffixes[kind] = tuple(ids[cut:])
    if len(prefixes) != 1:
        raise ValueError(f"the toy prompts do not share their image prefix: {sorted(prefixes)}")

    def ids(text: str) -> tuple[int, ...]:
        return (*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)

    words = sorted({word for kind in shapes.QUESTION_KINDS for word in shapes.vocabulary(kind)})
    captions = {combo: tuple(ids(c) for c in shapes.ShapeSpec(*combo).captions()) for combo in shapes.ALL_COMBOS}
    image_id = tokenizer.convert_tokens_to_ids(family_spec(FAMILY).placeholder)
    return Templates(prefixes.pop(), suffixes, {w: ids(w) for w in words}, captions, image_id, tokenizer.pad_token_id)


@dataclass(frozen=True)
class Packed:
    """One training batch: one row per drawing, its image prefix shared by all of its prompts.

    A row is the prefix (image placeholders replaced by the drawing's VQ tokens, which is what the model
    does with ``pixel_values``) followed by one segment per prompt (request + target). ``attention_mask``
    (additive, rows x 1 x L x L) lets a segment read the prefix and its own earlier tokens only, and
    ``position_ids`` restart every segment right after the prefix, so each segment is computed exactly as
    its prompt would be alone; the prefix is computed once instead of once per prompt.
    ``text_targets``: the next token where it is a target (answer, eos, caption), else -100.
    ``predicts_code``: positions whose next token is an image token (the "native" objective).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    text_targets: torch.Tensor
    predicts_code: torch.Tensor


def pack(
    t: Templates, specs: Sequence[shapes.ShapeSpec], codes: torch.Tensor, caption_choice: Sequence[int], captions: bool
) -> Packed:
    """The batch of ``specs`` (drawings) with their VQ tokens ``codes``; ``caption_choice``: which
    reference caption each drawing is trained on (when ``captions``)."""
    import torch

    rows = []  # (ids, segment of each token, position ids, targets)
    for spec, image_codes, choice in zip(specs, codes.tolist(), caption_choice, strict=True):
        codes_left = iter(image_codes)
        ids = [next(codes_left) if token == t.image_id else token for token in t.prefix]
        segment, positions, targets = [0] * len(ids), list(range(len(ids))), [-100] * len(ids)
        answers = {kind: t.answers[spec.answer(kind)] for kind in shapes.QUESTION_KINDS}
        if captions:
            answers[CAPTION_KIND] = t.captions[spec.combo][choice]
        for number, (kind, answer) in enumerate(answers.items(), start=1):
            part = [*t.suffixes[kind], *answer]
            ids += part
            segment += [number] * len(part)
            positions += range(len(t.prefix), len(t.prefix) + len(part))
            targets += [-100] * (len(t.suffixes[kind]) - 1) + list(answer) + [-100]
        rows.append((ids, segment, positions, targets))
    length = max(len(ids) for ids, *_ in rows)
    n = len(rows)
    input_ids = torch.full((n, length), t.pad_id)
    segments = torch.full((n, length), -1)
    position_ids = torch.zeros((n, length), dtype=torch.long)
    text_targets = torch.full((n, length), -100)
    for r, (ids, segment, positions, targets) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        segments[r, : len(ids)] = torch.tensor(segment)
        position_ids[r, : len(ids)] = torch.tensor(positions)
        text_targets[r, : len(ids)] = torch.tensor(targets)
    index = torch.arange(length)
    causal = index[None, :] <= index[:, None]
    query, key = segments[:, :, None], segments[:, None, :]
    allowed = causal & (((key == 0) & (query >= 0)) | (key == query))  # padding (-1) reads itself only
    attention_mask = torch.zeros((n, 1, length, length)).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
    image = torch.tensor([token == t.image_id for token in t.prefix])
    first, last = int(image.nonzero()[0]), int(image.nonzero()[-1])
    predicts_code = torch.zeros((n, length), dtype=torch.bool)
    predicts_code[:, first:last] = True  # the next token is an image token (all but the first)
    return Packed(input_ids, position_ids, attention_mask, text_targets, predicts_code)


def loss(model: ChameleonForConditionalGeneration, batch: Packed, image_loss: float) -> tuple[torch.Tensor, float]:
    """(loss to minimise, text loss): cross-entropy of the text targets (image tokens excluded from the
    softmax, as the model's forward does) plus ``image_loss`` x cross-entropy of the next image token
    over the image codes only."""
    import torch
    import torch.nn.functional as F

    hidden = model.model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).last_hidden_state
    image_cols = torch.tensor(model.model.vocabulary_mapping.image_tokens)
    text = batch.text_targets >= 0
    logits = model.lm_head(hidden[text])
    logits[:, image_cols] = torch.finfo(logits.dtype).min
    total = F.cross_entropy(logits, batch.text_targets[text])
    text_loss = float(total.detach())
    if image_loss > 0:
        code_logits = model.lm_head(hidden[batch.predicts_code])[:, image_cols]
        next_codes = batch.input_ids[:, 1:][batch.predicts_code[:, :-1]]
        total = total + image_loss * F.cross_entropy(code_logits, torch.searchsorted(image_cols, next_codes))
    return total, text_loss


RESUME_EVERY = 100  # optimizer steps between saved training states


def train(
    recipe: ToyRecipe, log: Callable[[str], None] = print, resume: Path | None = None
) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """Build, fit the codebook and train the toy model; deterministic for the recipe (see module doc).

    ``resume``: a file for the training state, written every ``RESUME_EVERY`` steps; a run that finds
    a state of the same recipe there continues from it, to the same weights as an uninterrupted run.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _train(recipe, log, resume)
    finally:
        torch.set_num_threads(threads)


def _train(
    recipe: ToyRecipe, log: Callable[[str], None], resume: Path | None
) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    import torch

    start = time.perf_counter()
    model, processor = build(recipe)
    specs = train_specs(recipe)
    pixel_values = _pixel_values(processor, specs)
    fit_codebook(model, pixel_values[: recipe.kmeans_images], recipe.kmeans_iters, recipe.seed)
    codes = image_tokens(model, pixel_values)
    used = len(torch.unique(codes))
    log(
        f"train-toy: {len(specs)} training drawings, codebook fitted ({used} of {model.config.vq_config.num_embeddings} codes used) "
        f"in {time.perf_counter() - start:.0f}s"
    )
    t = templates(processor)

    for parameter in model.model.vqmodel.parameters():
        parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(
        f"train-toy: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters "
        f"({sum(p.numel() for p in trainable) / 1e6:.2f} M trained), {recipe.steps} steps of {recipe.batch_images} drawings"
    )
    optimizer = torch.optim.AdamW(trainable, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)

    def schedule(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(_derived_seed("order", recipe.seed))
    order, cursor, first_step = torch.randperm(len(specs), generator=generator), 0, 0
    # the state also names the training tokens, so a state written by other code is never resumed
    identity = {"recipe": dataclasses.asdict(recipe), "tokens": hashlib.sha256(codes.numpy().tobytes()).hexdigest()}
    state = _read_state(resume, identity, log)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        order, cursor, first_step = state["order"], state["cursor"], state["step"]
        log(f"train-toy: resuming at step {first_step} from {resume}")
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(first_step, recipe.steps):
        if cursor + recipe.batch_images > len(order):
            order, cursor = torch.randperm(len(specs), generator=generator), 0
        index = order[cursor : cursor + recipe.batch_images]
        cursor += recipe.batch_images
        choice = torch.randint(5, (len(index),), generator=generator).tolist()
        batch = pack(t, [specs[i] for i in index.tolist()], codes[index], choice, recipe.captions)
        total, text_loss = loss(model, batch, recipe.image_loss)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(text_loss)
        done = step + 1
        if done % 50 == 0 or done == recipe.steps:
            elapsed = time.perf_counter() - t0
            eta = elapsed / (done - first_step) * (recipe.steps - done)
            log(
                f"train-toy: step {done}/{recipe.steps} text loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                f"({elapsed:.0f}s, {eta:.0f}s left)"
            )
        if resume is not None and done % RESUME_EVERY == 0 and done < recipe.steps:
            state = {
                "identity": identity,
                "step": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "order": order,
                "cursor": cursor,
            }
            tmp = resume.with_name(resume.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, resume)
    model.eval()
    return model, processor


def _read_state(resume: Path | None, identity: dict, log: Callable[[str], None]) -> dict | None:
    """The training state saved at ``resume`` if it belongs to this run (same recipe and training
    tokens); loaded with ``weights_only`` (tensors and plain values only)."""
    import torch

    if resume is None or not resume.is_file():
        return None
    state = torch.load(resume, weights_only=True)
    if state.get("identity") != identity:
        log(f"train-toy: not resuming from {resume}: it was written for another recipe or other training data")
        return None
    return state


# ------------------------------------------------------------------------------------------ evaluation

# Every knockout condition (gate_randomized edits hidden states rather than attention edges).
CONDITIONS: tuple[str, ...] = tuple(name for name in CONDITION_NAMES if name != "gate_randomized")


def accuracy(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    items: Sequence[tuple[shapes.ShapeSpec, str]],
    condition: str = "baseline",
    batch_size: int = 48,
) -> dict[str, float]:
    """Exact-match accuracy per question kind (and ``macro``, their mean) of greedy answers under a condition.

    The same path as the Chameleon wrapper: processor with ``return_for_text_completion``, layouts from
    the processed ids, generation inside ``intervene``, the first line of the new tokens scored.
    """
    import torch

    from interventions import family_spec, find_layouts, intervene, make_condition

    ids = family_spec(FAMILY).token_ids(processor.tokenizer)
    correct: dict[str, list[bool]] = {kind: [] for kind in shapes.QUESTION_KINDS}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = processor(
            text=[prompt_text(kind) for _, kind in chunk],
            images=[shapes.draw(spec) for spec, _ in chunk],
            padding=True,
            return_tensors="pt",
            return_for_text_completion=True,
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        layouts = [
            dataclasses.replace(layout, key=f"toy/{start + row}")
            for row, layout in enumerate(find_layouts(inputs["input_ids"], inputs["attention_mask"], ids))
        ]
        with torch.inference_mode(), intervene(model, make_condition(condition), layouts):
            generated = model.generate(
                **inputs,
                max_new_tokens=4,
                do_sample=False,
                suppress_tokens=list(ids.image),
                pad_token_id=processor.tokenizer.pad_token_id,
            )
        texts = processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for (spec, kind), text in zip(chunk, texts):
            correct[kind].append(prompts.first_line(text) == spec.answer(kind))
    scores = {kind: sum(hits) / len(hits) for kind, hits in correct.items() if hits}
    scores["macro"] = sum(scores.values()) / len(scores)
    return scores


def measure(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    conditions: Sequence[str] = CONDITIONS,
    splits: Sequence[str] = SPLITS,
) -> dict[str, dict[str, float]]:
    """Macro accuracy, ``{condition: {split: accuracy}}``, every drawing asked all three questions."""
    return {
        condition: {
            split: accuracy(model, processor, question_items(eval_specs(split)), condition)["macro"] for split in splits
        }
        for condition in conditions
    }


def smoke_accuracy(path: str | Path, conditions: Sequence[str] = CONDITIONS) -> dict[str, float]:
    """``narrowgate_smoke_vqa``'s VQA accuracy of the checkpoint at ``path`` through lmms-eval (the
    registered Chameleon wrapper, in process, float32 on the CPU), for each condition on one load."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from interventions import make_condition
    from model_wrappers import load_model
    from narrowgate.launcher import apply_filelock_workaround, tasks_dir

    apply_filelock_workaround()
    task = "narrowgate_smoke_vqa"
    manager = TaskManager("ERROR", include_path=tasks_dir(), include_defaults=False)
    lm = load_model(FAMILY, str(path), device="cpu", dtype="float32", batch_size=8)
    scores = {}
    for condition in conditions:
        lm.set_condition(make_condition(condition))
        results = evaluator.simple_evaluate(model=lm, tasks=[task], task_manager=manager, verbosity="ERROR")
        if results is None or task not in results.get("results", {}):
            raise RuntimeError(f"lmms-eval returned no results for {task} under {condition}")
        scores[condition] = float(results["results"][task]["vqa_accuracy,none"])
    return scores


def load(path: str | Path | None = None) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """A toy checkpoint (default: the shipped one) in float32, eval mode, with its processor."""
    import torch
    from transformers import AutoProcessor, ChameleonForConditionalGeneration

    path = toy_checkpoint() if path is None else Path(path)
    model = ChameleonForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(path)


# -------------------------------------------------------------------------------------------- saving


def save(
    model: ChameleonForConditionalGeneration,
    processor: ProcessorMixin,
    recipe: ToyRecipe,
    out: str | Path,
    report: dict,
) -> Path:
    """Write the model (float16), processor, recipe and report into ``out``, replacing it as a whole:
    the folder is written next to ``out`` and renamed into place, so it is never half-written."""
    import shutil
    import tempfile

    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model.to(torch.float16).save_pretrained(tmp)
    model.to(torch.float32)
    processor.save_pretrained(tmp)
    (tmp / RECIPE_FILE).write_text(json.dumps(dataclasses.asdict(recipe), indent=2) + "\n")
    write_report(tmp, report)
    for path in (tmp, *tmp.iterdir()):  # mkdtemp and some writers create owner-only files
        path.chmod(0o755 if path.is_dir() else 0o644)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ------------------------------------------------------------------------------------------------ CLI


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = ToyRecipe()
    parser.add_argument(
        "--out", required=True, type=Path, help=f"checkpoint folder to write (the shipped one: {TOY_CHECKPOINT})"
    )
    parser.add_argument(
        "--recipe", type=Path, help=f"start from a recipe file (a checkpoint's {RECIPE_FILE}) instead of the defaults"
    )
    parser.add_argument("--seed", type=int, help=f"weights, data and order (default {defaults.seed})")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"optimizer steps (default {defaults.steps}); step-based, so a seed gives the same model on any machine",
    )
    parser.add_argument(
        "--image-loss",
        type=float,
        help=f"weight of the image-token loss, the 'native' objective (default {defaults.image_loss}; 0: answers and captions only)",
    )
    parser.add_argument("--no-captions", action="store_true", help="train on the questions only")
    parser.add_argument("--skip-measure", action="store_true", help="do not measure the conditions after training")


def recipe_from(args: argparse.Namespace) -> ToyRecipe:
    """The recipe of a ``train-toy`` command line: the defaults or ``--recipe``, then the options given."""
    fields = {f.name for f in dataclasses.fields(ToyRecipe)}
    base: dict = {}
    if args.recipe is not None:
        base = json.loads(Path(args.recipe).read_text())
        if not isinstance(base, dict):
            raise ValueError(f"{args.recipe}: expected a JSON object of recipe fields, got {type(base).__name__}")
        unknown = sorted(set(base) - fields)
        if unknown:
            raise ValueError(
                f"{args.recipe}: unknown recipe field(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
            )
    given = {"seed": args.seed, "steps": args.steps, "image_loss": args.image_loss}
    base.update({name: value for name, value in given.items() if value is not None})
    if args.no_captions:
        base["captions"] = False
    return ToyRecipe(**base)


def run(args: argparse.Namespace) -> int:
    try:
        recipe = recipe_from(args)
    except (OSError, ValueError) as error:
        print(f"narrowgate train-toy: {error}", file=sys.stderr)
        return 2
    resume = resume_file(args.out)
    resume.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, processor = train(recipe, resume=resume)
    seconds = time.perf_counter() - start
    report: dict = {"train_seconds": round(seconds), "parameters": sum(p.numel() for p in model.parameters())}
    out = save(model, processor, recipe, args.out, report)
    resume.unlink(missing_ok=True)
    if not args.skip_measure:
        print("train-toy: measuring the saved checkpoint under each condition ...")
        report["smoke_vqa_accuracy"] = smoke_accuracy(out)
        report["macro_accuracy"] = measure(*load(out))
        write_report(out, report)
        print("narrowgate_smoke_vqa (lmms-eval, VQA accuracy):")
        print("\n".join(f"  {condition:<22}{value:.3f}" for condition, value in report["smoke_vqa_accuracy"].items()))
        print("macro exact-match accuracy, every drawing asked all three questions (in process):")
        print(format_table(report["macro_accuracy"]))
    print(f"train-toy: wrote {out} ({folder_bytes(out) / 1e6:.2f} MB) after {seconds / 60:.1f} min of training")
    return 0


def resume_file(out: Path) -> Path:
    """Where ``train-toy --out OUT`` keeps its training state until OUT is written."""
    return out.parent / f".{out.name}.train-state.pt"


def write_report(out: Path, report: dict) -> None:
    tmp = out / f".{REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / REPORT_FILE)


def format_table(table: dict[str, dict[str, float]]) -> str:
    splits = list(next(iter(table.values())))
    lines = [f"  {'condition':<22}" + "".join(f"{s:>10}" for s in splits)]
    lines += [f"  {c:<22}" + "".join(f"{v:>10.3f}" for v in row.values()) for c, row in table.items()]
    return "\n".join(lines)
