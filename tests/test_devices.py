"""A model spread over devices (``device_map``): every tensor the engine hands a layer is on its device.

No second accelerator is needed: the decoder layers from ``first`` on, the final norm and the LM head of
a fresh tiny model are moved to the ``meta`` device behind accelerate's ``AlignDevicesHook`` (what
``device_map`` installs), so the forward starts on the CPU and finishes on ``meta``. Any engine tensor
built on the embeddings' device and used by a ``meta`` layer is a device error. With ``first`` = 1 the
attention of the two layers needs its tensors on two devices; with ``first`` = 0 the hidden state
reaching layer 1's gate edits (before accelerate moves anything) is on ``meta`` too. Numbers are compared on a real
cuda:0 + cpu split by ``benchmarks/device_split.py`` on a machine with a GPU.
"""

from __future__ import annotations

import pytest
import torch
from accelerate.hooks import AlignDevicesHook, add_hook_to_module
from tiny_cases import CONDITION_CASES, load, same_size_pair

from interventions import CONDITIONS, intervene, make_condition, patch_gate, record_gate
from interventions.session import language_model, session_of

META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split(tiny_dir, images):
    """(family, first) -> (model with layers first.. on meta, inputs, layouts)."""
    cache = {}

    def get(family, first=1):
        if (family, first) not in cache:
            tiny = load(tiny_dir, family)
            model = type(tiny.model).from_pretrained(tiny_dir(family), dtype=torch.float32).eval()
            decoder = language_model(model)
            for module in (*decoder.layers[first:], decoder.norm, model.get_output_embeddings()):
                module.to(META)
                add_hook_to_module(module, AlignDevicesHook(execution_device=META))
            inputs = tiny.inputs(same_size_pair(images))
            cache[family, first] = model, inputs, tiny.layouts(inputs)
        return cache[family, first]

    return get


def prefill_and_step(model, inputs):
    """A prompt forward and one decoding step (a single query) on the cache it built."""
    out = model(**inputs, use_cache=True)
    assert out.logits.device == META
    step = {
        "input_ids": torch.ones_like(inputs["input_ids"][:, :1]),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.ones_like(inputs["attention_mask"][:, :1])], 1),
    }
    assert model(**step, cache=out.past_key_values, use_cache=True).logits.device == META


@pytest.mark.parametrize("first", [0, 1], ids=["layers_0+_on_meta", "layer_1_on_meta"])
@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("family", ["chameleon", "emu3", "llava"])
def test_every_condition_runs_on_a_split_model(split, family, reference, first):
    model, inputs, layouts = split(family, first)
    session = None
    with torch.no_grad():
        for name, knockout in CONDITION_CASES:
            condition = make_condition(name, knockout=knockout, k=3)
            with intervene(model, condition, layouts, reference=reference):
                prefill_and_step(model, inputs)
                session = session_of(language_model(model))
                knockouts, edits = session.knockout.on, [edit.directions for edit in session.edits]
                if CONDITIONS[name].edits_gate:
                    # The pre-hooks see the hidden state before accelerate moves it: it is edited where it is.
                    (edit,) = edits
                    assert set(edit.built) == ({CPU} if first else {CPU, META})
                elif name != "baseline":
                    # built once per device in this forward, for the devices of the layers' attention
                    assert set(knockouts.built) == ({CPU, META} if first else {META})


def test_patching_on_a_split_model(split):
    model, inputs, layouts = split("chameleon")
    with torch.no_grad():
        with record_gate(model, layouts) as recording:
            model(**inputs)
        assert set(recording.states) == {0, 1}
        with intervene(model, "gate_only", layouts), patch_gate(model, recording, layouts):
            prefill_and_step(model, inputs)
            session = session_of(language_model(model))
            assert set(session.knockout.on.built) == {CPU, META}
