"""SDXL prompt encoding as the WebUI does it: (embeds, pooled) for a prompt, both text encoders.

Imported lazily (torch). Kept apart from the SD1/SD2 encoder so another denoising loop
can call `SDXLPromptEncoder.encode` directly. What the WebUI does (sd_hijack_clip.py,
sd_models_xl.py, sgm's conditioner):
- CLIP-L (absent in the refiner): the penultimate layer's hidden states, without the
  final layer norm. "Clip skip" is ignored by default, as in the WebUI; its "Clip skip
  SDXL" option (`clip_l_skip=True` here) takes hidden_states[-N] instead.
- OpenCLIP-bigG: always the penultimate layer, without the final layer norm; the pooled
  vector is the projected end-of-text token of the last layer, from the first 75-token chunk.
- Per token, the two encoders' states are concatenated (CLIP-L first).
- An empty negative prompt gives all-zero embeddings and pooled vector.
Prompt weights and BREAK chunking go through compel, like the SD1/SD2 encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from sdcli.conditioning.prompts import parse_prompt


class HiddenLayer(torch.nn.Module):
    """A CLIP text encoder whose `last_hidden_state` is hidden_states[index], no final layer norm."""

    def __init__(self, text_encoder: Any, index: int):
        super().__init__()
        self.inner = text_encoder
        self.index = index
        self.config = text_encoder.config

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def forward(self, input_ids, attention_mask=None, output_hidden_states=None, return_dict=True):
        out = self.inner(input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True)
        return BaseModelOutputWithPooling(last_hidden_state=out.hidden_states[self.index],
                                          hidden_states=out.hidden_states)


class SDXLPromptEncoder:
    """Encodes prompts for one SDXL (base or refiner) pipeline."""

    def __init__(self, pipe: Any, clip_skip: int = 1, clip_l_skip: bool = False):
        compel = compel_embeddings()  # not `from compel import`: its __init__ imports other families' pipelines
        EmbeddingsProvider, ReturnedEmbeddingsType = compel.EmbeddingsProvider, compel.ReturnedEmbeddingsType
        self.pipe = pipe
        self.device = pipe.text_encoder_2.device
        self.providers = []
        for encoder, tokenizer in ((pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2)):
            if encoder is None:  # the refiner has no CLIP-L
                continue
            index = -clip_skip if clip_l_skip and encoder is pipe.text_encoder else -2
            self.providers.append(EmbeddingsProvider(
                tokenizer=tokenizer,
                text_encoder=HiddenLayer(encoder, index),
                truncate=False,  # long prompts are chunked by 75 tokens, as in the WebUI
                returned_embeddings_type=ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED,  # = as returned
                dtype_for_device_getter=lambda _device, enc=encoder: enc.dtype,
                device=str(encoder.device),
            ))

    @torch.no_grad()
    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One prompt -> ([1, 77*k, dim], [1, pooled_dim]); BREAK segments are chunked apart."""
        parts = []
        segments = parse_prompt(prompt).segments or [[]]
        for segment in segments:
            texts = [t for t, _ in segment] or [""]
            weights = [w for _, w in segment] or [1.0]
            per_encoder = [p.get_embeddings_for_weighted_prompt_fragments(
                text_batch=[texts], fragment_weights_batch=[weights], device=self.device) for p in self.providers]
            parts.append(torch.cat(per_encoder, dim=-1))
        first = " ".join(t for t, _ in segments[0])
        return torch.cat(parts, dim=1), self.pooled(first)

    def pooled(self, text: str) -> torch.Tensor:
        """OpenCLIP-bigG's projected end-of-text vector for the first 75 tokens of `text`."""
        tokenizer = self.pipe.tokenizer_2
        ids = tokenizer(text, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids.to(self.device)
        return self.pipe.text_encoder_2(ids, return_dict=True).text_embeds

    @torch.no_grad()
    def pipeline_kwargs(self, prompt: str, negative: str) -> dict[str, torch.Tensor]:
        """The four embedding arguments of diffusers' SDXL pipelines (batch of one)."""
        pos, pos_pooled = self.encode(prompt)
        neg, neg_pooled = self.encode(negative)
        if not negative:
            neg, neg_pooled = torch.zeros_like(neg), torch.zeros_like(neg_pooled)
        if pos.shape[1] != neg.shape[1]:  # pad the shorter with empty-prompt chunks (zeros for a zeroed negative)
            empty = self.encode("")[0]
            while pos.shape[1] < neg.shape[1]:
                pos = torch.cat([pos, empty], dim=1)
            while neg.shape[1] < pos.shape[1]:
                neg = torch.cat([neg, empty if negative else torch.zeros_like(empty)], dim=1)
        return {"prompt_embeds": pos, "negative_prompt_embeds": neg,
                "pooled_prompt_embeds": pos_pooled, "negative_pooled_prompt_embeds": neg_pooled}


def compel_embeddings() -> Any:
    """compel.embeddings_provider, without running compel/__init__ until something needs it.

    compel's __init__ imports its convenience wrappers, and they import the Flux, Lumina2,
    Sana and SDXL pipelines: other model families' modules, a second or more of start-up
    for an SD1 job. The package is registered with a lazy __getattr__ that runs the real
    __init__ on first use of any top-level name, so `from compel import Compel` still works.
    """
    import importlib
    import importlib.util
    import sys
    import types

    if "compel" not in sys.modules:
        spec = importlib.util.find_spec("compel")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return importlib.import_module("compel.embeddings_provider")
        package = types.ModuleType("compel")
        package.__spec__, package.__file__ = spec, spec.origin
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = "compel"

        def load_all(name: str) -> Any:
            del package.__dict__["__getattr__"]
            spec.loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = load_all  # type: ignore[attr-defined]
        sys.modules["compel"] = package
    return importlib.import_module("compel.embeddings_provider")
