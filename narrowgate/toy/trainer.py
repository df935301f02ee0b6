"""The toy's trainer: packed rows (one per drawing, its prompts sharing the image prefix), the loss,
and the deterministic, resumable training loop."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from narrowgate_tasks import shapes

from .knockout import prefix_knockouts, training_under
from .model import build, fit_codebook, image_tokens, load, pixel_values_of
from .recipe import ARCHITECTURE, CAPTION_KIND, FAMILY, ToyRecipe
from .world import SHAPES, World, derived_seed, eval_specs, prompt_text, train_specs, world_of

if TYPE_CHECKING:
    import torch
    from transformers import ChameleonForConditionalGeneration, ProcessorMixin


@dataclass(frozen=True)
class Templates:
    """Token ids of the training prompts, split where they stop sharing tokens.

    Every prompt is ``prefix`` (bos, start-of-image, ``<image>`` x 64 or 256, the gate) followed by the
    request of its kind (``suffixes``), exactly as the processor tokenizes ``prompt_text(kind, world)``.
    """

    prefix: tuple[int, ...]
    kinds: tuple[str, ...]  # the world's question kinds
    suffixes: dict[str, tuple[int, ...]]  # kind (question kinds and "caption") -> ids after the gate
    answers: dict[str, tuple[int, ...]]  # answer word -> its ids + eos
    captions: dict[tuple, tuple[tuple[int, ...], ...]]  # combo -> each reference caption's ids + eos
    image_id: int
    pad_id: int


def templates(processor: ProcessorMixin, world: World = SHAPES, specs: Sequence = ()) -> Templates:
    """The token ids of ``world``'s prompts, answers and the captions of ``specs``' combinations (in
    the shapes world: of every combination)."""
    from PIL import Image

    from interventions import family_spec

    tokenizer = processor.tokenizer
    (gate,) = family_spec(FAMILY).token_ids(tokenizer).gate
    blank = Image.new("RGB", (32, 32), shapes.BACKGROUND)
    prefixes, suffixes = set(), {}
    for kind in [*world.kinds, CAPTION_KIND]:
        ids = processor(text=[prompt_text(kind, world)], images=[blank], return_for_text_completion=True)["input_ids"][
            0
        ].tolist()
        cut = ids.index(gate) + 1
        prefixes.add(tuple(ids[:cut]))
        suffixes[kind] = tuple(ids[cut:])
    if len(prefixes) != 1:
        raise ValueError(f"the toy prompts do not share their image prefix: {sorted(prefixes)}")

    def ids(text: str) -> tuple[int, ...]:
        return (*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)

    words = sorted({word for kind in world.kinds for word in world.vocabulary(kind)})
    if world == SHAPES:
        specs = [*specs, *(shapes.ShapeSpec(*combo) for combo in shapes.ALL_COMBOS)]
    by_combo = {spec.combo: spec for spec in specs}
    captions = {combo: tuple(ids(c) for c in spec.captions()) for combo, spec in by_combo.items()}
    image_id = tokenizer.convert_tokens_to_ids(family_spec(FAMILY).placeholder)
    return Templates(
        prefixes.pop(), world.kinds, suffixes, {w: ids(w) for w in words}, captions, image_id, tokenizer.pad_token_id
    )


@dataclass(frozen=True)
class Packed:
    """One training batch: one row per drawing, its image prefix shared by all of its prompts.

    A row is the prefix (image placeholders replaced by the drawing's VQ tokens, which is what the model
    does with ``pixel_values``) followed by one segment per prompt (request + target). ``attention_mask``
    (additive, rows x 1 x L x L) lets a segment read the prefix and its own earlier tokens only, and
    ``position_ids`` restart every segment right after the prefix, so each segment is computed exactly as
    its prompt would be alone; the prefix is computed once instead of once per prompt.
    With text-to-image rows, one more row per drawing follows them all: its caption, then its image
    (``"{caption}<image>"`` as the processor tokenizes it), a row of its own (causal, padded).
    ``text_targets``: the next token where it is a target (answer, eos, caption, the gate's target), else -100.
    ``predicts_code``: positions of the drawing rows whose next token is an image token (the "native" objective).
    ``generates_code``: positions of the text-to-image rows whose next token is an image token (all of them).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    text_targets: torch.Tensor
    predicts_code: torch.Tensor
    generates_code: torch.Tensor


def gate_token(t: Templates, spec, caption: int, gate_target: str) -> int:
    """What the gate predicts under ``gate_target`` (``ToyRecipe.gate_target``, not "none"): the first
    token of the drawing's reference caption number ``caption``, or of its answer to that question kind."""
    if gate_target == CAPTION_KIND:
        return t.captions[spec.combo][caption][0]
    return t.answers[spec.answer(gate_target)][0]


def pack(
    t: Templates,
    specs: Sequence,
    codes: torch.Tensor,
    caption_choice: Sequence[int],
    captions: bool,
    gate_target: str = "none",
    t2i: bool = False,
    kinds: Sequence[str] | None = None,
) -> Packed:
    """The batch of ``specs`` (drawings) with their VQ tokens ``codes``; ``caption_choice``: which
    reference caption each drawing is trained on (when ``captions``, as the gate's target under
    ``gate_target`` "caption", and as the text of its text-to-image row when ``t2i``); ``kinds``: the
    question kinds asked (default: all of the world's; none while a curriculum trains generation only)."""
    import torch

    gate = len(t.prefix) - 1
    rows = []  # (ids, segment of each token, position ids, targets)
    images = []  # each drawing's prefix, its VQ tokens in place
    for spec, image_codes, choice in zip(specs, codes.tolist(), caption_choice, strict=True):
        codes_left = iter(image_codes)
        ids = [next(codes_left) if token == t.image_id else token for token in t.prefix]
        images.append(ids)
        segment, positions, targets = [0] * len(ids), list(range(len(ids))), [-100] * len(ids)
        if gate_target != "none":
            targets[gate] = gate_token(t, spec, choice, gate_target)
        answers = {kind: t.answers[spec.answer(kind)] for kind in (t.kinds if kinds is None else kinds)}
        if captions:
            answers[CAPTION_KIND] = t.captions[spec.combo][choice]
        for number, (kind, answer) in enumerate(answers.items(), start=1):
            part = [*t.suffixes[kind], *answer]
            ids = ids + part
            segment += [number] * len(part)
            positions += range(len(t.prefix), len(t.prefix) + len(part))
            targets += [-100] * (len(t.suffixes[kind]) - 1) + list(answer) + [-100]
        rows.append((ids, segment, positions, targets))
    image = torch.tensor([token == t.image_id for token in t.prefix])
    first, last = int(image.nonzero()[0]), int(image.nonzero()[-1])
    t2i_starts = []  # each text-to-image row's start-of-image position
    if t2i:
        for spec, prefix, choice in zip(specs, images, caption_choice, strict=True):
            ids = [prefix[0], *t.captions[spec.combo][choice][:-1], *prefix[1:]]  # bos, caption (no eos), image
            t2i_starts.append(len(ids) - len(prefix) + first - 1)
            rows.append((ids, [0] * len(ids), list(range(len(ids))), [-100] * len(ids)))
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
    predicts_code = torch.zeros((n, length), dtype=torch.bool)
    predicts_code[: len(specs), first:last] = True  # the next token is an image token (all but the first)
    generates_code = torch.zeros((n, length), dtype=torch.bool)
    for r, start in enumerate(t2i_starts, start=len(specs)):
        # from start-of-image on, the next token is an image token: all 64, the first one too (it follows the caption)
        generates_code[r, start : start + last - first + 1] = True
    return Packed(input_ids, position_ids, attention_mask, text_targets, predicts_code, generates_code)


def loss(
    model: ChameleonForConditionalGeneration, batch: Packed, image_loss: float, t2i: float = 0.0
) -> tuple[torch.Tensor, float]:
    """(loss to minimise, text loss): cross-entropy of the text targets (image tokens excluded from the
    softmax, as the model's forward does) plus ``image_loss`` x cross-entropy of the next image token
    over the image codes only, plus ``t2i`` x the same on the text-to-image rows' image codes."""
    import torch
    import torch.nn.functional as F

    hidden = model.model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).last_hidden_state
    image_cols = torch.tensor(model.model.vocabulary_mapping.image_tokens)
    text = batch.text_targets >= 0
    logits = model.lm_head(hidden[text])
    logits[:, image_cols] = torch.finfo(logits.dtype).min
    # a generation-only batch without captions or gate target has no text targets
    total = F.cross_entropy(logits, batch.text_targets[text]) if bool(text.any()) else hidden.sum() * 0
    text_loss = float(total.detach())
    for weight, where in ((image_loss, batch.predicts_code), (t2i, batch.generates_code)):
        if weight > 0:
            code_logits = model.lm_head(hidden[where])[:, image_cols]
            next_codes = batch.input_ids[:, 1:][where[:, :-1]]
            total = total + weight * F.cross_entropy(code_logits, torch.searchsorted(image_cols, next_codes))
    return total, text_loss


RESUME_EVERY = 100  # optimizer steps between saved training states


def train(
    recipe: ToyRecipe,
    log: Callable[[str], None] = print,
    resume: Path | None = None,
    init: Path | None = None,
    curve: list[dict] | None = None,
) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """Build, fit the codebook and train the toy model; deterministic for the recipe (see module doc).

    ``resume``: a file for the training state, written every ``RESUME_EVERY`` steps; a run that finds
    a state of the same recipe there continues from it, to the same weights as an uninterrupted run.
    ``init``: fine-tune this toy checkpoint (its weights and VQ codebook; the recipe's architecture
    must match it) instead of building and fitting a new one.
    ``curve``: a list that receives the learning curve (``probe``'s points, every ``recipe.curve_every``
    steps and at the last; a resumed run's earlier points come from its training state).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _train(recipe, log, resume, init, [] if curve is None else curve)
    finally:
        torch.set_num_threads(threads)


PROBE = 48  # unseen jittered drawings ("seen" split) whose answers make the learning curve


def probe(model: ChameleonForConditionalGeneration, t: Templates, codes: torch.Tensor, specs: Sequence) -> float:
    """Teacher-forced exact match of the answers (every answer token and the eos are the argmax over the
    text tokens) of ``specs`` asked every question of ``t``'s world: a cheap accuracy for the learning curve."""
    import torch

    image_cols = torch.tensor(model.model.vocabulary_mapping.image_tokens)
    was_training, hits = model.training, []
    model.eval()
    with torch.no_grad():
        for kind in t.kinds:  # one question per row, so a row's targets are one answer
            batch = pack(t, specs, codes, [0] * len(specs), captions=False, kinds=[kind])
            hidden = model.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
            ).last_hidden_state
            logits = model.lm_head(hidden)
            logits[..., image_cols] = torch.finfo(logits.dtype).min
            targets = batch.text_targets
            right = (logits.argmax(dim=-1) == targets) | (targets < 0)
            hits += right.all(dim=1).tolist()
    model.train(was_training)
    return sum(hits) / len(hits)


def _train(
    recipe: ToyRecipe, log: Callable[[str], None], resume: Path | None, init: Path | None, curve: list[dict]
) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    import torch

    start = time.perf_counter()
    world = world_of(recipe)
    model, processor = build(recipe) if init is None else _start_from(init, recipe)
    specs = train_specs(recipe)
    pixel_values = pixel_values_of(processor, specs, world)
    if init is None:
        fit_codebook(model, pixel_values[: recipe.kmeans_images], recipe.kmeans_iters, recipe.seed, recipe.codebook)
    codes = image_tokens(model, pixel_values)
    probe_specs = eval_specs("seen", world)[:PROBE]
    probe_codes = image_tokens(model, pixel_values_of(processor, probe_specs, world))
    used = len(torch.unique(codes))
    log(
        f"train-toy: {len(specs)} training drawings, {used} of {model.config.vq_config.num_embeddings} codes used "
        f"({'codebook fitted' if init is None else f'starting from {init}'}) in {time.perf_counter() - start:.0f}s"
    )
    t = templates(processor, world, specs)
    understanding_from = math.ceil(recipe.generation_first * recipe.steps)  # the curriculum's first question step
    if understanding_from:
        log(f"train-toy: steps 1-{understanding_from} train generation only; the questions join at step {understanding_from + 1}")

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
    generator = torch.Generator().manual_seed(derived_seed("order", recipe.seed))
    order, cursor, first_step = torch.randperm(len(specs), generator=generator), 0, 0
    # the state also names the training tokens, so a state written by other code is never resumed
    identity = {
        "recipe": dataclasses.asdict(recipe),
        "tokens": hashlib.sha256(codes.numpy().tobytes()).hexdigest(),
        "init": None if init is None else str(init),
    }
    state = _read_state(resume, identity, log)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        order, cursor, first_step = state["order"], state["cursor"], state["step"]
        curve[:] = state["curve"]
        log(f"train-toy: resuming at step {first_step} from {resume}")
    knockouts = prefix_knockouts(recipe.condition, t.prefix, processor.tokenizer)
    if knockouts:
        cuts = "; ".join(f"queries from {ko.first_query} read none of {len(ko.keys)} keys" for ko in knockouts)
        log(f"train-toy: training under {recipe.condition} ({recipe.knockout} knockout, every layer): {cuts}")
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(first_step, recipe.steps):
        if cursor + recipe.batch_images > len(order):
            order, cursor = torch.randperm(len(specs), generator=generator), 0
        index = order[cursor : cursor + recipe.batch_images]
        cursor += recipe.batch_images
        choice = torch.randint(5, (len(index),), generator=generator).tolist()
        batch = pack(
            t,
            [specs[i] for i in index.tolist()],
            codes[index],
            choice,
            recipe.captions,
            recipe.gate_target,
            recipe.t2i > 0,
            kinds=() if step < understanding_from else None,
        )
        with training_under(model, knockouts, recipe.knockout, collect=recipe.attention_loss > 0) as cut_mass:
            total, text_loss = loss(model, batch, recipe.image_loss, recipe.t2i)
        if cut_mass:
            total = total + recipe.attention_loss * torch.stack(cut_mass).mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(text_loss)
        done = step + 1
        if done % recipe.curve_every == 0 or done == recipe.steps:
            recent = losses[-recipe.curve_every :]
            point = {"step": done, "text_loss": sum(recent) / len(recent), "accuracy": probe(model, t, probe_codes, probe_specs)}
            curve.append(point)
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
                "curve": curve,
            }
            tmp = resume.with_name(resume.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, resume)
    model.eval()
    return model, processor


def _start_from(init: Path, recipe: ToyRecipe) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """A toy checkpoint to fine-tune, checked against the recipe's architecture."""
    model, processor = load(init)
    differ = {
        name: (getattr(model.config, name), getattr(recipe, name))
        for name in ARCHITECTURE
        if getattr(model.config, name) != getattr(recipe, name)
    }
    if differ:
        raise ValueError(f"{init}: the checkpoint's architecture differs from the recipe's (checkpoint, recipe): {differ}")
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

