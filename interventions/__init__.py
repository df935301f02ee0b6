"""Interventions on the image-to-text path of vision-language models (no lmms-eval import here).

families: which tokens form an image and its gate. layouts: where they sit in a batch. conditions:
named, documented experiments. knockout + intervene: the attention-edge mechanism bound to a model. prefix: several conditions
generated side by side with their shared prefix prefilled once.
gate: randomisation, recording and patching of the gate's hidden state.
"""

from .conditions import CONDITIONS, Condition, Knockout, make_condition
from .families import FAMILIES, FamilyIds, FamilySpec, family_spec
from .gate import GateRecording, patch_gate, record_gate
from .intervene import intervene, intervene_each
from .layouts import ImageSpan, Layout, find_layouts
from .prefix import generate_each

__all__ = [
    "CONDITIONS",
    "FAMILIES",
    "Condition",
    "FamilyIds",
    "FamilySpec",
    "GateRecording",
    "ImageSpan",
    "Knockout",
    "Layout",
    "family_spec",
    "find_layouts",
    "generate_each",
    "intervene",
    "intervene_each",
    "make_condition",
    "patch_gate",
    "record_gate",
]
