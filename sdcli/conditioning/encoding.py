"""Prompt encoding as the WebUI's CLIP wrapper (sd_hijack_clip.py, sd_emphasis.py) does it.

A prompt is parsed with the WebUI's attention grammar, tokenized without special
tokens and cut into chunks of 75 tokens (a chunk ends early at a BREAK, and a chunk
that would split a phrase goes back to its last comma when that is at most 20
tokens back); each chunk becomes [BOS] + tokens + padding + [EOS] (77 tokens),
is encoded on its own (CLIP skip N: hidden state -N through the final LayerNorm),
weighted by the emphasis mode, and the chunks are concatenated. Prompt and negative
are not padded to each other (the denoiser runs them apart when they differ).
--emphasis comfy is ComfyUI's instead (comfy/sd1_clip.py): its weight grammar, each
weighted fragment tokenized whole and moved to the next chunk whole unless it has 8
tokens or more, and a weighted token's state moved from the empty prompt's by its weight.
Hand-written: no library does the WebUI's weighting. Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.prompts import BREAK_MARK, comfy_weights, parse_attention

CHUNK = 75
COMMA_BACKTRACK = 20  # the WebUI's "Prompt word wrap length limit"
COMFY_WHOLE = 8  # ComfyUI's max_word_length: a fragment of fewer tokens is never split between chunks


def final_layer_norm(text_encoder: Any) -> torch.nn.Module:
    """The CLIP text encoder's final LayerNorm, in transformers 4 or 5 layout."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


def text_layers(text_encoder: Any) -> int:
    """How many transformer layers the text encoder has (the largest valid CLIP skip)."""
    return int(text_encoder.config.num_hidden_layers)


def is_open_clip(text_encoder: Any) -> bool:
    """SD2's OpenCLIP text encoder (GELU) rather than SD1's OpenAI CLIP (quick GELU)."""
    return text_encoder.config.hidden_act == "gelu"


@dataclass
class Chunk:
    """75 (or fewer) tokens and their weights."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


def weighted_fragments(text: str, emphasis: str) -> list[tuple[str, float]]:
    """[(fragment, weight)] of a prompt by the emphasis mode's grammar (none: the text as it is, weight 1)."""
    if emphasis == "none":
        return [(text, 1.0)]
    return comfy_weights(text) if emphasis == "comfy" else parse_attention(text)


def comfy_emphasis(z: torch.Tensor, multipliers: torch.Tensor, empty: Callable[[], torch.Tensor]) -> torch.Tensor:
    """ComfyUI's weighting (encode_token_weights): a token of weight w != 1 becomes empty + (z - empty) x w, `empty`
    the state at its position of the empty prompt's tokens (made only when a weight is not 1); no mean restored."""
    weighted = (multipliers != 1.0).unsqueeze(-1)
    if not bool(weighted.any()):
        return z
    base = empty()
    return torch.where(weighted, (z - base) * multipliers.unsqueeze(-1) + base, z)


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, emphasis: str) -> torch.Tensor:
    """Weight token embeddings: Original restores the chunk's mean afterwards, No norm does not."""
    if emphasis == "none":
        return z
    original_mean = z.mean()
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    if emphasis == "original":
        z = z * (original_mean / z.mean())
    return z


class ClipTextEncoder:
    """One CLIP text encoder as the WebUI wraps it: text -> [1, 77 x chunks, dim]."""

    def __init__(self, tokenizer: Any, text_encoder: Any, clip_skip: int = 1, emphasis: str = "original"):
        self.tokenizer, self.text_encoder, self.emphasis = tokenizer, text_encoder, emphasis
        self.id_start, self.id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.id_pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.id_end
        self.comma = tokenizer.get_vocab().get(",</w>")
        # The WebUI's OpenCLIP wrapper (SD2) has no CLIP skip: it always takes its configured layer.
        self.clip_skip = 1 if is_open_clip(text_encoder) else clip_skip
        self._empty: torch.Tensor | None = None  # comfy: the empty prompt's states (empty_states)

    def chunks(self, text: str) -> list[Chunk]:
        """The WebUI's tokenize_line: BREAK, 75-token chunks, comma backtracking (comfy: comfy_chunks)."""
        if self.emphasis == "comfy":
            return self.comfy_chunks(text)
        parsed = weighted_fragments(text, self.emphasis)
        tokenized = self.tokenizer([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
        done: list[Chunk] = []
        chunk, last_comma = Chunk(), -1

        def close() -> None:
            nonlocal chunk, last_comma
            fill = CHUNK - len(chunk.tokens)
            chunk.tokens = [self.id_start, *chunk.tokens, *[self.id_end] * fill, self.id_end]
            chunk.multipliers = [1.0, *chunk.multipliers, *[1.0] * fill, 1.0]
            done.append(chunk)
            chunk, last_comma = Chunk(), -1

        for tokens, (fragment, weight) in zip(tokenized, parsed, strict=True):
            if (fragment, weight) == BREAK_MARK:
                close()
                continue
            for token in tokens:
                if token == self.comma:
                    last_comma = len(chunk.tokens)
                elif len(chunk.tokens) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                    cut = last_comma + 1
                    moved = Chunk(chunk.tokens[cut:], chunk.multipliers[cut:])
                    chunk = Chunk(chunk.tokens[:cut], chunk.multipliers[:cut])
                    close()
                    chunk = moved
                if len(chunk.tokens) == CHUNK:
                    close()
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
        if chunk.tokens or not done:
            close()
        return done

    def comfy_chunks(self, text: str) -> list[Chunk]:
        """ComfyUI's tokenize_with_weights: each weighted fragment's tokens go whole into the chunk, or whole into a
        new one when they do not fit, unless there are COMFY_WHOLE or more: those fill the chunk and go on."""
        fragments = [(t, w) for t, w in comfy_weights(text) if t]
        tokenized = self.tokenizer([t for t, _ in fragments], truncation=False,
                                   add_special_tokens=False)["input_ids"] if fragments else []
        done: list[Chunk] = []
        chunk = Chunk()

        def close() -> None:
            nonlocal chunk
            fill = CHUNK - len(chunk.tokens)
            done.append(Chunk([self.id_start, *chunk.tokens, *[self.id_end] * fill, self.id_end],
                              [1.0, *chunk.multipliers, *[1.0] * (fill + 1)]))
            chunk = Chunk()

        for tokens, (_, weight) in zip(tokenized, fragments, strict=True):
            while tokens:
                room = CHUNK - len(chunk.tokens)
                taken = tokens if len(tokens) <= room else tokens[:room] if len(tokens) >= COMFY_WHOLE else []
                chunk.tokens += taken
                chunk.multipliers += [weight] * len(taken)
                tokens = tokens[len(taken):]
                if tokens:
                    close()
        close()
        return done

    def empty_states(self) -> torch.Tensor:
        """[1, 77, dim]: the empty prompt's chunk (ComfyUI's gen_empty_tokens: start, end, padding), made once."""
        if self._empty is None:
            self._empty = self.hidden_states(self.ids(self.comfy_chunks("")[0]))
        return self._empty

    def ids(self, chunk: Chunk) -> torch.Tensor:
        """[1, 77] token ids of a chunk (OpenCLIP: everything after the first end token is padding)."""
        ids = list(chunk.tokens)
        if self.id_pad != self.id_end:
            first_end = ids.index(self.id_end)
            ids = ids[:first_end + 1] + [self.id_pad] * (len(ids) - first_end - 1)
        return torch.tensor([ids], device=self.text_encoder.device)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """[1, 77] token ids -> [1, 77, dim]: the layer CLIP skip selects (through the final LayerNorm)."""
        out = self.text_encoder(tokens, output_hidden_states=True, return_dict=True)
        if self.clip_skip > 1:
            return final_layer_norm(self.text_encoder)(out.hidden_states[-self.clip_skip])
        return out.last_hidden_state

    def encode_chunk(self, chunk: Chunk) -> torch.Tensor:
        """[1, 77, dim] for one chunk: CLIP skip, then emphasis."""
        device = self.text_encoder.device
        if self.emphasis == "comfy" and any(m != 1.0 for m in chunk.multipliers):
            self.empty_states()  # first: an encoder that keeps its last call's pooled vector keeps the chunk's
        z = self.hidden_states(self.ids(chunk))
        multipliers = torch.tensor([chunk.multipliers], device=device, dtype=z.dtype)
        if self.emphasis == "comfy":
            return comfy_emphasis(z, multipliers, self.empty_states)
        return apply_emphasis(z, multipliers, self.emphasis)

    @torch.no_grad()
    def __call__(self, text: str) -> torch.Tensor:
        return torch.cat([self.encode_chunk(c) for c in self.chunks(text)], dim=1)


class ClipPromptEncoder:
    """Prompts -> Conditioning through one CLIP text encoder (SD 1.x/2.x), cached per text
    (families.base.PromptEncoder)."""

    def __init__(self, tokenizer: Any, text_encoder: Any, clip_skip: int = 1, emphasis: str = "original"):
        self.clip = ClipTextEncoder(tokenizer, text_encoder, clip_skip, emphasis)
        self.capabilities = EncoderCapabilities(clip_skip_layers=text_layers(text_encoder))
        self.cache: dict[str, Conditioning] = {}

    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            self.cache[text] = Conditioning(self.clip(text))
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt is encoded as any prompt (an empty one too)."""
        return self.encode

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, torch.Tensor]:
        """The embedding arguments of diffusers' SD pipelines (batch of one)."""
        positive, negative_embeds = self.encode_pair(prompt, negative)
        return {"prompt_embeds": positive, "negative_prompt_embeds": negative_embeds}

    def encode_pair(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt and negative embeddings of equal length, for diffusers pipelines (which need it):
        the shorter one is padded with empty-prompt chunks (the WebUI's "pad conds" option)."""
        pos, neg = self.encode(prompt).crossattn, self.encode(negative).crossattn
        empty = self.encode("").crossattn
        while pos.shape[1] < neg.shape[1]:
            pos = torch.cat([pos, empty], dim=1)
        while neg.shape[1] < pos.shape[1]:
            neg = torch.cat([neg, empty], dim=1)
        return pos, neg
