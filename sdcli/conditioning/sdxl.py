"""SDXL prompt encoding as the WebUI does it: prompts -> Conditioning for the base, refiner and inpainting models.

What the WebUI does (sd_hijack_clip.py, sd_hijack_open_clip.py, sd_models_xl.py, sgm's
GeneralConditioner), on top of the SD1 chunking and emphasis (conditioning.encoding):
- Each text encoder chunks and weights the prompt on its own (75-token chunks, BREAK,
  comma backtracking; emphasis per chunk and encoder).
- CLIP-L (absent in the refiner): the penultimate layer's hidden states, without the
  final layer norm. "Clip skip" is ignored, as in the WebUI; its "Clip skip SDXL" option
  (`clip_l_skip=True` here) takes hidden_states[-N] instead.
- OpenCLIP-bigG: the penultimate layer, without the final layer norm, padded with its
  pad token after the first end-of-text; the pooled vector (`text_embeds`) is the
  projected end-of-text state of the last layer (after the final norm), from the first chunk,
  before emphasis.
- Per token, the two encoders' states are concatenated (CLIP-L first).
- `time_ids`: original size, crop (0, 0) and target size, all (height, width) of the
  generation; the refiner has an aesthetic score (6 for the prompt, 2.5 for the negative)
  in place of the target size.
- A negative prompt whose every scheduled text is empty gives all-zero embeddings and
  pooled vector (`force_zero_negative_prompt`); time_ids stay.
Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, EncoderCapabilities
from sdcli.conditioning.encoding import ClipTextEncoder, text_layers

AESTHETIC_SCORES = {False: 6.0, True: 2.5}  # the WebUI's refiner high/low aesthetic score (prompt, negative)
CROP = (0, 0)  # the WebUI's "crop top" / "crop left" for SDXL


class LayerEncoder(ClipTextEncoder):
    """One SDXL text encoder: hidden_states[layer] (no final norm); keeps the last chunk's pooled vector."""

    def __init__(self, tokenizer: Any, text_encoder: Any, layer: int, emphasis: str, projected: bool = True):
        super().__init__(tokenizer, text_encoder, 1, emphasis)
        self.layer, self.projected = layer, projected  # projected False: ComfyUI's SD3 CLIP-L pooled
        self.pooled: torch.Tensor | None = None

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.text_encoder(tokens, output_hidden_states=True, return_dict=True)
        self.pooled = getattr(out, "text_embeds", None)  # projection of the normed last layer at end-of-text
        if not self.projected:  # the normed last layer at the first end-of-text token, unprojected
            self.pooled = out.last_hidden_state[:, int((tokens[0] == self.id_end).int().argmax())]
        return out.hidden_states[self.layer]

    @torch.no_grad()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[1, 77 x chunks, dim] and the first chunk's pooled vector (None without a projection)."""
        zs, pooled = [], None
        for i, chunk in enumerate(self.chunks(text)):
            zs.append(self.encode_chunk(chunk))
            if i == 0:
                pooled = self.pooled
        return torch.cat(zs, dim=1), pooled


class SDXLPromptEncoder:
    """Prompts -> Conditioning for one SDXL pipeline at one generation size, cached per text
    (families.base.PromptEncoder). `aesthetic_score`: the refiner's time ids."""

    def __init__(self, pipe: Any, clip_skip: int = 1, emphasis: str = "original", size: tuple[int, int] = (1024, 1024),
                 clip_l_skip: bool = False, aesthetic_score: bool = False):
        self.encoders = []
        if pipe.text_encoder is not None:  # the refiner has no CLIP-L
            self.encoders.append(LayerEncoder(pipe.tokenizer, pipe.text_encoder, -clip_skip if clip_l_skip else -2,
                                              emphasis))
        self.big_g = LayerEncoder(pipe.tokenizer_2, pipe.text_encoder_2, -2, emphasis)
        self.encoders.append(self.big_g)
        # --clip-skip is checked against the first text encoder (CLIP-L; the refiner's bigG), as ever.
        self.comfy = emphasis == "comfy"  # ComfyUI encodes an empty negative prompt; the WebUI zeroes it
        self.capabilities = EncoderCapabilities(clip_skip_layers=text_layers(self.encoders[0].text_encoder),
                                                pooled=True, zero_empty_negative=not self.comfy)
        self.aesthetic_score = aesthetic_score
        self.width, self.height = size
        self.cache: dict[tuple[str, bool], Conditioning] = {}

    def time_ids(self, negative: bool) -> torch.Tensor:
        """[1, 6] (base) or [1, 5] (refiner: with the aesthetic score) size and crop conditioning."""
        size = (self.height, self.width)
        last = (AESTHETIC_SCORES[negative],) if self.aesthetic_score else size
        return torch.tensor([[*size, *CROP, *last]], dtype=torch.float32, device=self.big_g.text_encoder.device)

    def encode(self, text: str, negative: bool = False) -> Conditioning:
        """One text (as the WebUI's cond or uncond) -> Conditioning with SDXL's added_cond_kwargs."""
        key = (text, negative)
        if key not in self.cache:
            states, pooled = [], None
            for encoder in self.encoders:
                z, pooled = encoder.encode(text)
                states.append(z)
            crossattn = torch.cat(states, dim=-1)
            extra = {"added_cond_kwargs": {"text_embeds": pooled.to(crossattn.dtype),
                                           "time_ids": self.time_ids(negative).to(crossattn.dtype)}}
            self.cache[key] = Conditioning(crossattn, extra)
        return self.cache[key]

    def negative_encoder(self, zero: bool) -> Callable[[str], Conditioning]:
        """The negative prompt's encode function; `zero`: every scheduled negative text is empty (all zeros)."""
        def encode(text: str) -> Conditioning:
            cond = self.encode(text, negative=True)
            if not zero or self.comfy:
                return cond
            added = cond.extra["added_cond_kwargs"]
            return Conditioning(torch.zeros_like(cond.crossattn), {"added_cond_kwargs": {
                "text_embeds": torch.zeros_like(added["text_embeds"]), "time_ids": added["time_ids"]}})
        return encode

    @torch.no_grad()
    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, torch.Tensor]:
        """The four embedding arguments of diffusers' SDXL pipelines (batch of one), of equal length:
        the shorter is padded with empty-prompt chunks (zeros for a zeroed negative), as they need."""
        pos = self.encode(prompt)
        neg = self.negative_encoder(negative == "")(negative)
        empty = self.encode("").crossattn
        p, n = pos.crossattn, neg.crossattn
        while p.shape[1] < n.shape[1]:
            p = torch.cat([p, empty], dim=1)
        while n.shape[1] < p.shape[1]:
            n = torch.cat([n, empty if negative else torch.zeros_like(empty)], dim=1)
        return {"prompt_embeds": p, "negative_prompt_embeds": n,
                "pooled_prompt_embeds": pos.extra["added_cond_kwargs"]["text_embeds"],
                "negative_pooled_prompt_embeds": neg.extra["added_cond_kwargs"]["text_embeds"]}
