"""Chroma prompt encoding as diffusers' ChromaPipeline does it (_get_t5_prompt_embeds): the prompt's T5 tokens
and the end token (id 1), truncated and padded with the pad id (0) to 512 tokens; T5-XXL encodes them with the
attention mask of the real tokens; the transformer's text mask keeps the real tokens and the first pad token
(Chroma's training: "all except the first padding token are masked out").

The WebUI's attention grammar is parsed only to refuse weights: (word:1.2) emphasis is not applied to Chroma
by default, and BREAK joins the text.

--emphasis comfy (a replayed ComfyUI graph) encodes as ComfyUI's Chroma does (comfy/supported_models.py Chroma:
comfy/text_encoders/pixart_t5.py), which differs: the prompt's T5 tokens and the end token, NOT padded (min_length
1), encoded without a mask, with ComfyUI's weights (conditioning.flux.T5TextEncoder, moved from the states of as
many pad tokens), and no text mask in the transformer (every token attended). Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.flux import T5_END, T5_PAD, T5TextEncoder
from sdcli.conditioning.prompts import BREAK_MARK, parse_attention

MAX_LENGTH = 512  # ChromaPipeline's max_sequence_length


def chroma_tokens(tokenizer: Any, text: str) -> tuple[list[int], int]:
    """(512 token ids, number of real tokens with the end token) for `text`; weights other than 1 refused."""
    from sdcli.errors import UsageError

    parsed = [(t, w) for t, w in parse_attention(text) if (t, w) != BREAK_MARK]
    if any(w != 1.0 for _, w in parsed):
        raise UsageError("--prompt: a Chroma model takes no emphasis weights such as (word:1.2) "
                         "(its T5-XXL prompt is encoded as written); write the words without weights")
    fragments = [t for t, _ in parsed] or [""]
    ids: list[int] = []
    for tokens in tokenizer(fragments, truncation=False, add_special_tokens=False)["input_ids"]:
        ids.extend(tokens)
    ids = [*ids[:MAX_LENGTH - 1], T5_END]
    return [*ids, *[T5_PAD] * (MAX_LENGTH - len(ids))], len(ids)


class ChromaPromptEncoder:
    """Prompts -> Conditioning for Chroma (families.base.PromptEncoder): crossattn = T5 states [1, 512, dim],
    extra = {"mask": [1, 512] the transformer's text mask (1 = attended)}; cached per text. --emphasis comfy:
    crossattn = T5 states [1, tokens + 1, dim], no mask."""

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original"):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.capabilities = EncoderCapabilities(clip_skip_layers=1, emphasis=emphasis == "comfy", chunks=False)
        self.cache: dict[str, Conditioning] = {}
        # ComfyUI's text path: its T5 engine, unpadded, weights from the pad tokens' states
        self.comfy = (T5TextEncoder(tokenizer, text_encoder, "comfy", 1, empty_end=False) if emphasis == "comfy"
                      else None)

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        if text not in self.cache and self.comfy is not None:
            self.cache[text] = Conditioning(self.comfy(text))  # no "mask": every text token attended
        if text not in self.cache:
            ids, length = chroma_tokens(self.tokenizer, text)
            device = self.text_encoder.device
            positions = torch.arange(MAX_LENGTH, device=device)[None]
            encoder_mask = (positions < length).long()
            z = self.text_encoder(torch.tensor([ids], device=device), attention_mask=encoder_mask)[0]
            self.cache[text] = Conditioning(z, {"mask": (positions <= length).float()})
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (used above CFG scale 1)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """ChromaPipeline's embedding arguments (sdcli's loop runs Chroma; kept for the Protocol)."""
        cond, uncond = self.encode(prompt), self.encode(negative)
        return {"prompt_embeds": cond.crossattn, "prompt_attention_mask": cond.extra.get("mask"),
                "negative_prompt_embeds": uncond.crossattn, "negative_prompt_attention_mask": uncond.extra.get("mask")}
