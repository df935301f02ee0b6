"""A model split over devices (``device_map``) runs every condition exactly like one device.

For each family's tiny checkpoint, the decoder layers from the middle on go to the CPU and everything
else (embeddings, vision tower, first layers, final norm, LM head) to ``cuda:0``, through
``from_pretrained(device_map=...)`` as a user's ``device_map=auto`` run would; the same checkpoint is
also loaded whole on ``cuda:0``. Under every condition (both knockout semantics, fast path and eager
reference) it compares the prompt logits and a greedy generation between the two, and prints the
largest difference. Exit status 1 if any differs beyond float32 noise, 0 otherwise; without CUDA it
says so and exits 0 (``tests/test_devices.py`` covers the device bookkeeping on a CPU-only machine).
``--device cpu`` puts both halves on the CPU: it checks this script's mechanics, not a split.

    python benchmarks/device_split.py [--families chameleon,emu3] [--new-tokens 6] [--device cuda:0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

LOGITS_TOLERANCE = 1e-4  # float32, CPU vs GPU kernels on a 2-layer model


def split_map(model, cpu_from: int, device: str) -> dict[str, str]:
    """A device_map with decoder layers ``cpu_from``.. on the CPU and every other module on ``device``."""
    from interventions.session import language_model

    layers = language_model(model).layers
    layers_name = next(name for name, module in model.named_modules() if module is layers)
    device_map: dict[str, str] = {}
    module, prefix = model, ""
    for part in layers_name.split("."):
        device_map.update({prefix + name: device for name, _ in module.named_children() if name != part})
        device_map.update({prefix + name: device for name, _ in module.named_parameters(recurse=False)})
        module, prefix = getattr(module, part), prefix + part + "."
    device_map.update({f"{layers_name}.{i}": (device if i < cpu_from else "cpu") for i in range(len(layers))})
    return device_map


def images():
    from PIL import Image, ImageDraw

    out = []
    for background, ink in (((255, 255, 255), (220, 30, 30)), ((20, 20, 20), (40, 90, 230))):
        image = Image.new("RGB", (32, 32), background)
        ImageDraw.Draw(image).ellipse((8, 8, 24, 24), fill=ink)
        out.append(image)
    return out


def inputs_for(family: str, processor, dtype, device: str) -> dict:
    from interventions import family_spec

    placeholder = family_spec(family).placeholder
    texts = [f"{placeholder}what color is the shape ?", f"describe {placeholder} in one word"]
    inputs = dict(processor(text=texts, images=images(), padding=True, return_tensors="pt"))
    if torch.is_floating_point(inputs["pixel_values"]):
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    return {name: value.to(device) for name, value in inputs.items()}


def run(model, condition, inputs, layouts, reference: bool, suppress: list[int], pad: int, new_tokens: int):
    from interventions import intervene

    with torch.no_grad(), intervene(model, condition, layouts, reference=reference):
        logits = model(**inputs).logits.float().cpu()
        out = model.generate(
            **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, suppress_tokens=suppress,
            pad_token_id=pad, output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
    return logits, out.sequences[:, -new_tokens:].cpu(), torch.stack(out.logits, 1).float().cpu()


def compare(family: str, new_tokens: int, device: str) -> bool:
    import transformers

    from interventions import CONDITIONS, family_spec, find_layouts, make_condition
    from narrowgate.tiny import save

    spec = family_spec(family)
    model_class = getattr(transformers, spec.model_class)
    with tempfile.TemporaryDirectory() as folder:
        path = save(family, folder)
        processor = transformers.AutoProcessor.from_pretrained(path)
        whole = model_class.from_pretrained(path, dtype=torch.float32, device_map={"": device}).eval()
        cpu_from = whole.config.get_text_config().num_hidden_layers // 2
        device_map = split_map(model_class.from_pretrained(path, dtype=torch.float32), cpu_from, device)
        split = model_class.from_pretrained(path, dtype=torch.float32, device_map=device_map).eval()
    devices = sorted({str(p.device) for p in split.parameters()})
    ids = spec.token_ids(processor.tokenizer)
    inputs = inputs_for(family, processor, torch.float32, device)
    layouts = find_layouts(inputs["input_ids"], inputs["attention_mask"], ids)
    suppress = list(ids.image + ids.start + ids.gate)
    ok = True
    print(f"{family}: split over {', '.join(devices)} (decoder layers {cpu_from}.. on the cpu)")
    for name, definition in CONDITIONS.items():
        for knockout in ("zero", "mask") if "knockout" in definition.options else ("zero",):
            for reference in (False, True):
                cut = "image>last+gate>text" if "cut" in definition.options else None  # flow needs edges
                condition = make_condition(name, knockout=knockout, k=3, cut=cut)
                args = (condition, inputs, layouts, reference, suppress, processor.tokenizer.pad_token_id, new_tokens)
                try:
                    a_logits, a_tokens, a_generated = run(whole, *args)
                    b_logits, b_tokens, b_generated = run(split, *args)
                except Exception as error:  # report every failing condition, not just the first
                    ok = False
                    print(f"  FAIL {name:22s} {knockout:4s} {'eager' if reference else 'fast':5s} {type(error).__name__}: {error}")
                    continue
                prompt = max(float((a_logits[l.row, l.first:] - b_logits[l.row, l.first:]).abs().max()) for l in layouts)
                same = torch.equal(a_tokens, b_tokens)
                generated = float((a_generated - b_generated).abs().max()) if same else float("nan")
                good = prompt < LOGITS_TOLERANCE and same and generated < LOGITS_TOLERANCE
                ok &= good
                print(
                    f"  {'ok  ' if good else 'FAIL'} {name:22s} {knockout:4s} {'eager' if reference else 'fast':5s} "
                    f"prompt logits {prompt:.1e}  generated tokens {'equal' if same else 'DIFFER'}  logits {generated:.1e}"
                )
    return ok


def main() -> int:
    from narrowgate.tiny import TINY_FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(TINY_FAMILIES))
    parser.add_argument("--new-tokens", type=int, default=6)
    parser.add_argument("--device", default="cuda:0", help="where everything but the later decoder layers goes")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("device_split: needs CUDA (a model split between cuda:0 and the cpu); skipped. "
              "tests/test_devices.py checks the device bookkeeping without a GPU.")  # fmt: skip
        return 0
    results = {family: compare(family, args.new_tokens, args.device) for family in args.families.split(",")}
    failed = [family for family, ok in results.items() if not ok]
    print("all conditions agree between the split and the one-device model" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
