"""Prompt encoding: WebUI syntax + CLIP skip -> prompt embeddings, through compel.

Imported lazily (it imports torch). CLIP skip is done here rather than through
diffusers' `clip_skip` argument because diffusers 0.42 reaches for
`text_encoder.text_model`, which transformers 5 removed; compel's own
penultimate-layer option has the same problem and only knows skip 2.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from sdcli.conditioning.prompts import parse_prompt


def final_layer_norm(text_encoder: Any) -> torch.nn.Module:
    """The CLIP text encoder's final LayerNorm, in transformers 4 or 5 layout."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


class ClipSkipEncoder(torch.nn.Module):
    """Wraps a CLIP text encoder so `last_hidden_state` is WebUI "Clip skip: N".

    WebUI N takes `hidden_states[-N]` and applies the final layer norm
    (N=1 is the normal output). Callers (compel) see an ordinary encoder.
    """

    def __init__(self, text_encoder: Any, clip_skip: int):
        super().__init__()
        self.inner = text_encoder
        self.clip_skip = clip_skip
        self.config = text_encoder.config

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def forward(self, input_ids, attention_mask=None, output_hidden_states=None, return_dict=True):
        out = self.inner(input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True)
        hidden = final_layer_norm(self.inner)(out.hidden_states[-self.clip_skip])
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=out.pooler_output, hidden_states=out.hidden_states
        )


def text_layers(text_encoder: Any) -> int:
    """How many transformer layers the text encoder has (the largest valid CLIP skip)."""
    return int(text_encoder.config.num_hidden_layers)


class PromptEncoder:
    """Encodes prompt/negative pairs for one pipeline and CLIP skip setting."""

    def __init__(self, pipe: Any, clip_skip: int = 1):
        from sdcli.models.libraries import compel_embeddings

        compel = compel_embeddings()  # not `from compel import`: see compel_embeddings
        EmbeddingsProvider, ReturnedEmbeddingsType = compel.EmbeddingsProvider, compel.ReturnedEmbeddingsType

        encoder = pipe.text_encoder if clip_skip == 1 else ClipSkipEncoder(pipe.text_encoder, clip_skip)
        self.device = pipe.text_encoder.device
        self.provider = EmbeddingsProvider(
            tokenizer=pipe.tokenizer,
            text_encoder=encoder,
            truncate=False,  # long prompts are chunked by 75 tokens, as in the WebUI
            returned_embeddings_type=ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED,
            dtype_for_device_getter=lambda _device: pipe.text_encoder.dtype,
            device=str(self.device),
        )

    def encode(self, prompt: str) -> torch.Tensor:
        """One prompt -> [1, 77*k, dim] embeddings; BREAK segments are chunked apart."""
        parts = []
        for segment in parse_prompt(prompt).segments:
            texts = [t for t, _ in segment] or [""]
            weights = [w for _, w in segment] or [1.0]
            parts.append(self.provider.get_embeddings_for_weighted_prompt_fragments(
                text_batch=[texts], fragment_weights_batch=[weights], device=self.device))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def encode_pair(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt and negative embeddings, the shorter padded with empty-prompt chunks."""
        pos, neg = self.encode(prompt), self.encode(negative)
        if pos.shape[1] == neg.shape[1]:
            return pos, neg  # no padding: skip encoding the empty prompt (a text-encoder pass per call)
        empty = self.provider.empty_z.to(pos.dtype)
        while pos.shape[1] < neg.shape[1]:
            pos = torch.cat([pos, empty], dim=1)
        while neg.shape[1] < pos.shape[1]:
            neg = torch.cat([neg, empty], dim=1)
        return pos, neg
