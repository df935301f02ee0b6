"""The generic family ``auto``: any transformers image-text-to-text checkpoint whose images are runs of
image tokens in ``input_ids``, under every condition, with no new code.

The image span and the gate are derived from the checkpoint's config and processor
(``interventions.generic.derive_spec``) and checked on the processor's real output for a probe image
before anything runs (``check_probe``); a missing or ambiguous token is an error naming the model
argument that declares it: ``image_token=``, ``start_token=``, ``gate_token=`` (``+`` between several
gate tokens, ``none`` for no start/end token). The prompt is the processor's chat template with the
images and the task's text in one user turn (``ChatTemplateEncoder``); a processor without a chat
template (a base model) gets the images followed by the text.
"""

from __future__ import annotations

from typing import Any

from interventions import FamilySpec
from model_wrappers.base import NarrowgateModel
from model_wrappers.encoding import Encoder

# The probe the derived layout is checked on: processors resize it to their own size.
PROBE_SIZE = (224, 224)


class ChatTemplateEncoder(Encoder):
    """Prompts from the processor's chat template: the images, then the task's text, in one user turn."""

    def format_prompt(self, text: str, n_images: int) -> str:
        if not getattr(self.processor, "chat_template", None):
            return self.spec.placeholder * n_images + text
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        # Templates write the BOS token that the tokenizer adds again when the processor encodes the text.
        bos = self.tokenizer.bos_token
        if bos and prompt.startswith(bos) and self.tokenizer("a").input_ids[:1] == [self.tokenizer.bos_token_id]:
            prompt = prompt[len(bos) :]
        return prompt


class AutoModel(NarrowgateModel):
    family = "auto"
    encoder_class = ChatTemplateEncoder

    def __init__(
        self,
        pretrained: str,
        image_token: str | None = None,
        start_token: str | None = None,
        gate_token: str | None = None,
        **model_args: Any,
    ) -> None:
        self.declared = {"image_token": image_token, "start_token": start_token, "gate_token": gate_token}
        super().__init__(pretrained, **model_args)

    def load_spec(self, trust_remote_code: bool) -> FamilySpec:
        from PIL import Image
        from transformers import AutoConfig, AutoProcessor

        from interventions.generic import check_probe, derive_spec

        config = AutoConfig.from_pretrained(self.pretrained, trust_remote_code=trust_remote_code)
        processor = AutoProcessor.from_pretrained(self.pretrained, trust_remote_code=trust_remote_code)
        try:
            spec = derive_spec(config.model_type, config, processor, **self.declared)
            return check_probe(spec, processor, Image.new("RGB", PROBE_SIZE, (128, 128, 128)))
        except ValueError as error:
            raise ValueError(f"{self.model_name} ({self.pretrained}): {error}") from error
