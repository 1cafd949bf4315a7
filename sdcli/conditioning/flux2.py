"""Flux.2 [klein] prompt encoding as ComfyUI does it (comfy/text_encoders/flux.py KleinTokenizer, Qwen3_4BModel,
Flux2TEModel), which is what diffusers' Flux2KleinPipeline.encode_prompt computes too:

the prompt goes into Qwen3's chat template as one user turn with the assistant's turn opened and an empty think
block ("<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n": thinking
off), is tokenized and padded with <|endoftext|> to 512 tokens (longer prompts: diffusers truncates at 512), the
text encoder runs with the attention mask, and its hidden states 9, 18 and 27 are laid side by side per token
([1, 512, 3 * hidden]). ComfyUI tokenizes with weights disabled: brackets are text to Qwen3, so a prompt whose
WebUI emphasis is all 1 is passed as its plain text and one with other weights or BREAK is refused by name;
--emphasis none passes the prompt as written. Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.conditioning.qwen import QwenPromptEncoder

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
LAYERS = (9, 18, 27)  # hidden-state indices (0 = the embeddings), as diffusers' text_encoder_out_layers
LENGTH = 512  # tokens, padded (ComfyUI's min_length; diffusers' max_sequence_length)


class Flux2PromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Flux.2 [klein] (families.base.PromptEncoder): crossattn = Qwen3's hidden
    states 9, 18, 27 of the templated, padded prompt, concatenated per token [1, 512, 3 * dim]; cached per text."""

    model, encoder = "Flux.2", "Qwen3"

    def tokens(self, text: str) -> dict[str, Any]:
        """The templated prompt's input ids and attention mask, padded to 512 tokens."""
        templated = TEMPLATE.format(self.literal(text))
        return self.tokenizer(templated, padding="max_length", truncation=True, max_length=LENGTH,
                              return_tensors="pt")

    def states(self, text: str) -> torch.Tensor:
        inputs = self.tokens(text)
        device = self.text_encoder.device
        out = self.text_encoder(input_ids=inputs["input_ids"].to(device),
                                attention_mask=inputs["attention_mask"].to(device),
                                output_hidden_states=True, use_cache=False)
        states = torch.stack([out.hidden_states[k] for k in LAYERS], dim=2)  # [1, L, 3, D]
        return states.reshape(states.shape[0], states.shape[1], -1)
