"""Flux prompt encoding as Forge does it (backend/diffusion_engine/flux.py get_learned_conditioning):
T5-XXL token states as the text tokens, the CLIP-L pooled vector, and the distilled guidance.

T5 (Forge's T5TextProcessingEngine, as of dfdcbab): the prompt is parsed with the WebUI's attention
grammar, each fragment tokenized without special tokens, all of it one chunk (no 75-token limit;
BREAK starts the next chunk), each chunk closed with the end token (id 1) and padded with the pad id
(0) to 256 tokens, then to the longest chunk's length, encoded (no attention mask) and weighted by
the emphasis mode. Forge stacks a prompt's chunks along the batch axis and its scheduled prompt
conditioning takes row i for schedule entry i, so a prompt with BREAK is conditioned on its first
chunk alone (padded to the longest): that is what is encoded here.
CLIP-L (Forge's classic engine, return_pooled): the WebUI's 75-token chunks; the pooled output of
the first chunk is the vector. Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.encoding import Chunk, ClipTextEncoder, apply_emphasis, comfy_emphasis, weighted_fragments
from sdcli.conditioning.prompts import BREAK_MARK

T5_MIN_LENGTH = 256  # Forge's min_length: a chunk is padded to this many tokens, its end token included
T5_END, T5_PAD = 1, 0  # Forge's T5 engine hard-codes both ids (T5's </s> and <pad>)
DEFAULT_GUIDANCE = 3.5  # Forge: a distilled CFG scale of 0 means 3.5 (`or 3.5`)


class T5TextEncoder:
    """Forge's T5 engine: text -> [1, tokens, dim]."""

    def __init__(self, tokenizer: Any, text_encoder: Any, emphasis: str = "original", min_length: int = T5_MIN_LENGTH,
                 empty_end: bool = True):
        self.tokenizer, self.text_encoder, self.emphasis = tokenizer, text_encoder, emphasis
        self.min_length = min_length  # ComfyUI's SD3 T5: 77; its Chroma (PixArt) T5: 1, unpadded
        # comfy: the empty prompt's tokens the weights move from: the end token, then padding (ComfyUI's Flux, SD3);
        # padding alone (its PixArt T5, which Chroma uses: gen_empty_tokens without the end token)
        self.empty_end = empty_end

    def chunks(self, text: str) -> list[Chunk]:
        """Fragments -> chunks: BREAK closes one; each closed chunk ends with the end token, padded to 256."""
        parsed = weighted_fragments(text, self.emphasis)
        tokenized = self.tokenizer([t for t, _ in parsed], truncation=False,
                                   add_special_tokens=False)["input_ids"] if parsed else []  # comfy: "" has none
        done: list[Chunk] = []
        chunk = Chunk()

        def close() -> None:
            nonlocal chunk
            fill = max(self.min_length - len(chunk.tokens) - 1, 0)
            done.append(Chunk([*chunk.tokens, T5_END, *[T5_PAD] * fill], [*chunk.multipliers, 1.0, *[1.0] * fill]))
            chunk = Chunk()

        for tokens, (fragment, weight) in zip(tokenized, parsed, strict=True):
            if (fragment, weight) == BREAK_MARK:
                close()
                continue
            chunk.tokens.extend(tokens)
            chunk.multipliers.extend([weight] * len(tokens))
        if chunk.tokens or not done:
            close()
        return done

    @torch.no_grad()
    def __call__(self, text: str) -> torch.Tensor:
        """[1, tokens, dim]: the first chunk, padded to the longest chunk (Forge's row 0; see the module doc)."""
        device = self.text_encoder.device
        chunks = self.chunks(text)
        fill = max(len(c.tokens) for c in chunks) - len(chunks[0].tokens)
        tokens, multipliers = [*chunks[0].tokens, *[T5_PAD] * fill], [*chunks[0].multipliers, *[1.0] * fill]
        z = self.text_encoder(torch.tensor([tokens], device=device)).last_hidden_state
        weights = torch.tensor([multipliers], device=device, dtype=z.dtype)
        if self.emphasis == "comfy":  # the empty prompt's tokens as ComfyUI makes them (see empty_end)
            empty = [T5_END, *[T5_PAD] * (len(tokens) - 1)] if self.empty_end else [T5_PAD] * len(tokens)
            return comfy_emphasis(z, weights, lambda: self.text_encoder(
                torch.tensor([empty], device=device)).last_hidden_state)
        return apply_emphasis(z, weights, self.emphasis)


class FluxPromptEncoder:
    """Prompts -> Conditioning for Flux (families.base.PromptEncoder): crossattn = T5 states, extra =
    {"pooled": CLIP-L pooled [1, 768], "guidance": [1] (dev, Fill)}; cached per text."""

    def __init__(self, clip: tuple[Any, Any], t5: tuple[Any, Any], emphasis: str = "original",
                 guidance: float | None = None):
        """`clip`, `t5`: (tokenizer, text encoder) each."""
        self.t5 = T5TextEncoder(*t5, emphasis)
        self.clip = ClipTextEncoder(*clip, 1, emphasis)
        self.guidance = None if guidance is None else guidance or DEFAULT_GUIDANCE
        self.capabilities = EncoderCapabilities(clip_skip_layers=1, pooled=True)
        self.cache: dict[str, Conditioning] = {}

    @torch.no_grad()
    def pooled(self, text: str) -> torch.Tensor:
        """CLIP-L's pooled output of the prompt's first 75-token chunk."""
        first = self.clip.chunks(text)[0]
        tokens = torch.tensor([first.tokens], device=self.clip.text_encoder.device)
        return self.clip.text_encoder(tokens, return_dict=True).pooler_output

    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            extra = {"pooled": self.pooled(text)}
            if self.guidance is not None:
                extra["guidance"] = torch.tensor([self.guidance], dtype=torch.float32)
            self.cache[text] = Conditioning(self.t5(text), extra)
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (used only above CFG scale 1)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """diffusers' Flux pipelines' embedding arguments (sdcli's loop runs Flux; kept for the Protocol)."""
        cond = self.encode(prompt)
        return {"prompt_embeds": cond.crossattn, "pooled_prompt_embeds": cond.extra["pooled"]}
