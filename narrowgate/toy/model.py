"""The toy's architecture: a tiny-tokenizer Chameleon whose frozen VQ encoder is a hand-set patchifier
with a k-means codebook."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from narrowgate_tasks import shapes

from .recipe import ARCHITECTURE, FAMILY, IMAGE_TOKENS, ToyRecipe, toy_checkpoint

if TYPE_CHECKING:
    import torch
    from transformers import ChameleonForConditionalGeneration, ProcessorMixin

    from .world import World

# The VQ encoder as a fixed patchifier (see set_patch_encoder).
PATCH = 4  # pixels per image token side: two stride-2 downsamples (32-px images: 64 tokens; 64-px: 256)
INK = PATCH * PATCH  # per-pixel ink of a patch, then its mean colour (3 values)
FEATURES = INK + 3
ANCHOR = 100.0  # constant partner channel of every feature channel in the output GroupNorm
SHIFT = 20.0  # keeps the swish after that GroupNorm in its linear range
COLOUR_WEIGHT = 2.0  # colour counts double in the codebook's distances, so colours get codes of their own


def build(recipe: ToyRecipe) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """The untrained toy model and the tiny Chameleon's processor (at ``recipe.image_tokens``' image size):
    text weights random from ``recipe.seed``; the VQ encoder a patchifier (``set_patch_encoder``), its
    codebook still unfitted."""
    import torch
    from PIL import Image
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration

    from narrowgate.tiny import BUILDERS

    config, processor = BUILDERS[FAMILY]()
    sizes = {name: getattr(recipe, name) for name in ARCHITECTURE}
    side = IMAGE_TOKENS[recipe.image_tokens]
    processor.image_processor.size = {"shortest_edge": side}
    processor.image_processor.crop_size = {"height": side, "width": side}
    processor.image_seq_length = recipe.image_tokens
    # 64 channels (32 GroupNorm groups of a feature channel and its anchor), no resnet blocks in the levels.
    vq = {**config.vq_config.to_dict(), "base_channels": 64, "num_res_blocks": 0, "resolution": side}
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


def pixel_values_of(processor: ProcessorMixin, specs: Sequence, world: World | None = None) -> torch.Tensor:
    """The processor's pixel values of ``specs`` drawn in ``world`` (default: the shapes world)."""
    images = [shapes.draw(spec) if world is None else world.draw(spec) for spec in specs]
    return processor.image_processor(images, return_tensors="pt")["pixel_values"]


def fit_codebook(
    model: ChameleonForConditionalGeneration, pixel_values: torch.Tensor, iters: int, seed: int, method: str = "kmeans"
) -> None:
    """Set the VQ codebook from the encoder's pre-quantisation features of ``pixel_values``.

    ``kmeans``: k-means centroids (k-means++ start). The VQ assigns a feature to its nearest codebook row
    (Euclidean), the distance k-means minimises, so the codes are the features' own clusters.
    ``random``: rows drawn from a Gaussian with the features' per-channel mean and spread, so codes cut
    feature space at random rather than along its clusters (no code is fitted to a colour or a shape).
    Either way the VQ is then rounded to float16, the storage precision, so training sees exactly the
    codes of the saved checkpoint.
    """
    import torch

    vq = model.model.vqmodel
    with torch.no_grad():
        features = torch.cat([vq.quant_conv(vq.encoder(batch)) for batch in pixel_values.split(256)])
        points = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        k = vq.quantize.num_embeddings
        generator = torch.Generator().manual_seed(seed)
        if method == "random":
            noise = torch.randn((k, points.shape[1]), generator=generator)
            centres = points.mean(dim=0) + noise * points.std(dim=0)
        elif method == "kmeans":
            centres = kmeans(points, k, iters, generator)
        else:
            raise ValueError(f"unknown codebook method {method!r}; valid: kmeans, random")
        vq.quantize.embedding.weight.copy_(centres)
        for parameter in vq.parameters():
            parameter.copy_(parameter.half().float())


def kmeans(points: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` centroids of ``points`` after ``iters`` Lloyd steps from a k-means++ start."""
    import torch

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
    return centres


def image_tokens(model: ChameleonForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The VQ tokens (vocabulary ids) of each image, (N, image tokens): what the model embeds in place of ``<image>``."""
    import torch

    with torch.no_grad():
        return torch.cat([model.model.get_image_tokens(batch) for batch in pixel_values.split(256)])


def load(path: str | Path | None = None) -> tuple[ChameleonForConditionalGeneration, ProcessorMixin]:
    """A toy checkpoint (default: the shipped one) in float32, eval mode, with its processor."""
    import torch
    from transformers import AutoProcessor, ChameleonForConditionalGeneration

    path = toy_checkpoint() if path is None else Path(path)
    model = ChameleonForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(path)
