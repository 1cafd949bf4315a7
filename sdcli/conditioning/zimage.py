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

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.prompts import BREAK_MARK, parse_attention
from sdcli.errors import UsageError

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
HIDDEN_LAYER = -2  # the second-to-last hidden states (ComfyUI's layer_idx -2; diffusers' hidden_states[-2])


def literal_prompt(text: str, emphasis: str) -> str:
    """The text Qwen3 reads: the prompt with its (all-1) WebUI emphasis syntax removed, or as written with
    --emphasis none; UsageError for weights other than 1 or BREAK, which Z-Image's encoder does not take."""
    if emphasis == "none":
        return text
    parsed = parse_attention(text)
    if BREAK_MARK in parsed:
        raise UsageError("prompt: a Z-Image prompt is one text (Qwen3 has no 75-token chunks): remove BREAK")
    if weighted := next((t for t, w in parsed if w != 1.0), None):
        raise UsageError(f"prompt: Z-Image takes no emphasis weights (ComfyUI reads its prompts literally), got "
                         f"{weighted.strip()!r} weighted; remove the brackets, escape them (\\( \\)) or use "
                         "--emphasis none to give them to the text encoder as text")
    return "".join(t for t, _ in parsed)


class ZImagePromptEncoder:
    """Prompts -> Conditioning for Z-Image (families.base.PromptEncoder): crossattn = Qwen3's second-to-last
    hidden states of the templated prompt [1, tokens, dim]; cached per text."""

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original"):
        self.tokenizer, self.text_encoder, self.emphasis = tokenizer, text_encoder, emphasis
        self.capabilities = EncoderCapabilities(clip_skip_layers=1, emphasis=False, chunks=False)
        self.cache: dict[str, Conditioning] = {}

    def token_ids(self, text: str) -> list[int]:
        """The templated prompt's token ids."""
        templated = TEMPLATE.format(literal_prompt(text, self.emphasis))
        return list(self.tokenizer(templated, add_special_tokens=False)["input_ids"])

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            ids = torch.tensor([self.token_ids(text)], device=self.text_encoder.device)
            out = self.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
            self.cache[text] = Conditioning(out.hidden_states[HIDDEN_LAYER])
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (used only above CFG scale 1)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """diffusers' Z-Image pipelines' embedding arguments (sdcli's loop runs Z-Image; kept for the Protocol)."""
        return {"prompt_embeds": list(self.encode(prompt).crossattn),
                "negative_prompt_embeds": list(self.encode(negative).crossattn)}
