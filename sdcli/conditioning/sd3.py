"""SD3 / SD3.5 prompt encoding as Forge does it (backend/diffusion_engine/sd35.py get_learned_conditioning).

- CLIP-L and OpenCLIP-bigG each go through the WebUI's classic engine (75-token chunks, BREAK, comma
  backtracking, emphasis per chunk; bigG padded with its pad token after the first end token). Their states
  are hidden_states[-N] without the final LayerNorm, N = max(CLIP skip, 1): Forge's SD3 engines have a minimal
  CLIP skip of 1 and take the CLIP skip setting, so at the default (1) the last layer's output is used, and
  at CLIP skip 2 the penultimate layer that ComfyUI and diffusers always take. The pooled vectors are the
  projected end-of-text states of each encoder's first chunk (diffusers' text_embeds; an SD3 single file's
  CLIP-L projection is the identity, so this is also ComfyUI's unprojected CLIP-L pooled output).
- T5-XXL: Forge's T5 engine (conditioning.flux.T5TextEncoder: one chunk padded to 256 tokens).
- The CLIP-L and bigG states are concatenated per token (L first), zero-padded to T5's width, and the T5
  states follow them along the token axis; the pooled vector is [CLIP-L pooled, bigG pooled].
- A negative prompt whose every scheduled text is empty gives all zeros (Forge's force_zero_negative_prompt).
ComfyUI differs (comfy/text_encoders/sd3_clip.py): penultimate CLIP layers at every CLIP skip, weights that
scale the distance from the empty prompt's states, CLIP-L's pooled vector unprojected, T5 padded to 77 tokens,
an empty negative encoded, not zeroed: --emphasis comfy encodes so (ComfyUI's graphs replay with it).
Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.encoding import text_layers
from sdcli.conditioning.flux import T5TextEncoder
from sdcli.conditioning.sdxl import LayerEncoder


class SD3PromptEncoder:
    """Prompts -> Conditioning for one SD3 pipeline (families.base.PromptEncoder): crossattn = [CLIP-L | bigG |
    zeros] tokens then T5 tokens, extra = {"pooled": [1, L + G]}; cached per text."""

    def __init__(self, pipe: Any, clip_skip: int = 1, emphasis: str = "original"):
        # --emphasis comfy: ComfyUI's SD3 text path (sd3_clip.py): CLIP layer -2 unless CLIP skip goes deeper,
        # CLIP-L's pooled vector unprojected, T5 padded to 77 tokens, an empty negative encoded, not zeroed.
        self.comfy = emphasis == "comfy"
        layer = -max(clip_skip, 2 if self.comfy else 1)
        self.clip_l = LayerEncoder(pipe.tokenizer, pipe.text_encoder, layer, emphasis, projected=not self.comfy)
        self.clip_g = LayerEncoder(pipe.tokenizer_2, pipe.text_encoder_2, layer, emphasis)
        self.t5 = T5TextEncoder(pipe.tokenizer_3, pipe.text_encoder_3, emphasis, *((77,) if self.comfy else ()))
        self.width = int(pipe.transformer.config.joint_attention_dim)  # T5's width (Forge: 4096)
        self.capabilities = EncoderCapabilities(clip_skip_layers=text_layers(pipe.text_encoder), pooled=True,
                                                zero_empty_negative=not self.comfy)
        self.cache: dict[str, Conditioning] = {}

    def encode(self, text: str) -> Conditioning:
        if text not in self.cache:
            l_states, l_pooled = self.clip_l.encode(text)
            g_states, g_pooled = self.clip_g.encode(text)
            t5 = self.t5(text)
            lg = torch.cat([l_states, g_states], dim=-1)
            lg = torch.nn.functional.pad(lg, (0, self.width - lg.shape[-1]))
            crossattn = torch.cat([lg, t5.to(lg.dtype)], dim=-2)
            self.cache[text] = Conditioning(crossattn, {"pooled": torch.cat([l_pooled, g_pooled], dim=-1)})
        return self.cache[text]

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        """The negative prompt's encode function; `all_empty`: every scheduled negative text is "" (all zeros;
        ComfyUI's way encodes it)."""
        if not all_empty or self.comfy:
            return self.encode

        def zeros(text: str) -> Conditioning:
            cond = self.encode(text)
            return Conditioning(torch.zeros_like(cond.crossattn), {"pooled": torch.zeros_like(cond.extra["pooled"])})
        return zeros

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        """diffusers' SD3 pipelines' embedding arguments (sdcli's loop runs SD3; kept for the Protocol)."""
        pos, neg = self.encode(prompt), self.negative_encoder(negative == "")(negative)
        return {"prompt_embeds": pos.crossattn, "pooled_prompt_embeds": pos.extra["pooled"],
                "negative_prompt_embeds": neg.crossattn, "negative_pooled_prompt_embeds": neg.extra["pooled"]}
