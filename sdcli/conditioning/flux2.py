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

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.prompts import BREAK_MARK, parse_attention
from sdcli.errors import UsageError

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
LAYERS = (9, 18, 27)  # hidden-state indices (0 = the embeddings), as diffusers' text_encoder_out_layers
LENGTH = 512  # tokens, padded (ComfyUI's min_length; diffusers' max_sequence_length)


def literal_prompt(text: str, emphasis: str) -> str:
    """The text Qwen3 reads: the prompt with its (all-1) WebUI emphasis syntax removed, or as written with
    --emphasis none; UsageError for weights other than 1 or BREAK, which Flux.2's encoder does not take."""
    if emphasis == "none":
        return text
    parsed = parse_attention(text)
    if BREAK_MARK in parsed:
        raise UsageError("prompt: a Flux.2 prompt is one text (Qwen3 has no 75-token chunks): remove BREAK")
    if weighted := next((t for t, w in parsed if w != 1.0), None):
        raise UsageError(f"prompt: Flux.2 takes no emphasis weights (ComfyUI reads its prompts literally), got "
                         f"{weighted.strip()!r} weighted; remove the brackets, escape them (\\( \\)) or use "
                         "--emphasis none to give them to the text encoder as text")
    return "".join(t for t, _ in parsed)


class Flux2PromptEncoder:
    """Prompts -> Conditioning for Flux.2 [klein] (families.base.PromptEncoder): crossattn = Qwen3's hidden
    states 9, 18, 27 of the templated, padded prompt, concatenated per token [1, 512, 3 * dim]; cached per text."""

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original"):
        self.tokenizer, self.text_encoder, self.emphasis = tokenizer, text_encoder, emphasis
        self.capabilities = EncoderCapabilities(clip_skip_layers=1, emphasis=False, chunks=False)
        self.cache: dict[str, Conditioning] = {}

    def tokens(self, text: str) -> dict[str, Any]:
        """The templated prompt's input ids and attention mask, padded to 512 tokens."""
        templated = TEMPLATE.format(literal_prompt(text, self.emphasis))
        return self.tokenizer(templated, padding="max_length", truncation=True, max_length=LENGTH,
                              return_tensors="pt")

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            inputs = self.tokens(text)
            device = self.text_encoder.device
            out = self.text_encoder(input_ids=inputs["input_ids"].to(device),
                                    attention_mask=inputs["attention_mask"].to(device),
                                    output_hidden_states=True, use_cache=False)
            states = torch.stack([out.hidden_states[k] for k in LAYERS], dim=2)  # [1, L, 3, D]
            self.cache[text] = Conditioning(states.reshape(states.shape[0], states.shape[1], -1))
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (used only above CFG scale 1)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """diffusers' Flux2KleinPipeline embedding arguments (sdcli's loop runs Flux.2; kept for the Protocol)."""
        return {"prompt_embeds": self.encode(prompt).crossattn,
                "negative_prompt_embeds": self.encode(negative).crossattn}
