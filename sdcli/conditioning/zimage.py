"""Z-Image prompt encoding as ComfyUI does it (comfy/text_encoders/z_image.py ZImageTokenizer, Qwen3_4BModel),
which is what diffusers' ZImagePipeline.encode_prompt computes too:

the prompt goes into Qwen3's chat template as one user turn with the assistant's turn opened
("<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n": Qwen3's template with thinking on, no
think block), is tokenized without added special tokens, not padded and not truncated, and the text
encoder's second-to-last hidden states of all those tokens are the caption. ComfyUI tokenizes this
prompt with weights disabled: brackets are text to Qwen3. So sdcli passes a prompt whose WebUI emphasis
is all 1 as its plain text (escapes resolved) and refuses one with other weights or BREAK by name;
--emphasis none passes the prompt as written, brackets included. Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.conditioning import qwen
from sdcli.conditioning.qwen import QwenPromptEncoder

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
HIDDEN_LAYER = -2  # the second-to-last hidden states (ComfyUI's layer_idx -2; diffusers' hidden_states[-2])


def literal_prompt(text: str, emphasis: str) -> str:
    """The text Qwen3 reads (conditioning.qwen.literal_prompt); UsageError naming Z-Image."""
    return qwen.literal_prompt(text, emphasis, ZImagePromptEncoder.model, ZImagePromptEncoder.encoder)


class ZImagePromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Z-Image (families.base.PromptEncoder): crossattn = Qwen3's second-to-last
    hidden states of the templated prompt [1, tokens, dim]; cached per text."""

    model, encoder = "Z-Image", "Qwen3"

    def token_ids(self, text: str) -> list[int]:
        """The templated prompt's token ids."""
        templated = TEMPLATE.format(self.literal(text))
        return list(self.tokenizer(templated, add_special_tokens=False)["input_ids"])

    def states(self, text: str) -> torch.Tensor:
        ids = torch.tensor([self.token_ids(text)], device=self.text_encoder.device)
        out = self.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        return out.hidden_states[HIDDEN_LAYER]

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """diffusers' Z-Image pipelines' embedding arguments (lists of per-prompt states)."""
        return {"prompt_embeds": list(self.encode(prompt).crossattn),
                "negative_prompt_embeds": list(self.encode(negative).crossattn)}
