"""Does the tokenizer give the answer away? The share of questions one image token answers by its code alone.

The first emergence study found no gate, and the reason it pointed at was the toy's tokenizer: in the
shapes world nearly every drawing has an image token whose VQ code alone names the colour, so text can
read an answer off one image token and nothing pushes the model to summarise the image at the gate.
This measures that property of a checkpoint's world and codebook, independently of its weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import image_tokens, load, pixel_values_of
from .recipe import RECIPE_FILE, ToyRecipe
from .world import derived_seed, eval_specs, world_of

THRESHOLD = 0.99  # a code "names" an answer when at least this share of the drawings containing it have that answer
SUPPORT = 5  # ... and at least this many drawings contain it (a code seen once is trivially pure)
N_REFERENCE = 1000  # training-distribution drawings the purities are measured on


def giveaway(checkpoint: str | Path, threshold: float = THRESHOLD, support: int = SUPPORT) -> dict:
    """``{"threshold", "support", "n", "fraction", "per_kind"}``: among the evaluation drawings (the
    ``seen`` and ``held_out`` splits) x the world's question kinds, the fraction with at least one image
    token whose code names the right answer (purity >= ``threshold`` over ``N_REFERENCE`` drawings of the
    training distribution, each counted once per code it contains)."""
    import torch

    checkpoint = Path(checkpoint)
    recipe = ToyRecipe(**json.loads((checkpoint / RECIPE_FILE).read_text()))
    world = world_of(recipe)
    model, processor = load(checkpoint)
    reference = world.sample(N_REFERENCE, derived_seed("giveaway", recipe.seed), world.combos[0], jitter=True)
    evaluated = [*eval_specs("seen", world), *eval_specs("held_out", world)]

    def codes(specs) -> torch.Tensor:
        return image_tokens(model, pixel_values_of(processor, specs, world))

    reference_codes, evaluated_codes = codes(reference), codes(evaluated)
    vocabulary, inverse = torch.unique(torch.cat([reference_codes, evaluated_codes]), return_inverse=True)
    contains = torch.zeros((len(reference) + len(evaluated), len(vocabulary)), dtype=torch.bool)
    contains.scatter_(1, inverse, True)  # drawing x code: the drawing has a token with that code
    in_reference, in_evaluated = contains[: len(reference)].float(), contains[len(reference) :]
    per_kind = {}
    for kind in world.kinds:
        answers = world.vocabulary(kind)
        truth = torch.tensor([answers.index(spec.answer(kind)) for spec in reference])
        counts = in_reference.T @ torch.nn.functional.one_hot(truth, len(answers)).float()  # code x answer
        total = counts.sum(dim=1)
        purity, label = (counts / total.clamp(min=1)[:, None]).max(dim=1)
        names = (total >= support) & (purity >= threshold)
        expected = torch.tensor([answers.index(spec.answer(kind)) for spec in evaluated])
        right = names[None, :] & (label[None, :] == expected[:, None]) & in_evaluated
        per_kind[kind] = float(right.any(dim=1).float().mean())
    return {
        "threshold": threshold,
        "support": support,
        "n": len(evaluated),
        "fraction": sum(per_kind.values()) / len(per_kind),
        "per_kind": per_kind,
    }
