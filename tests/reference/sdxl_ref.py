"""Reference of the WebUI's SDXL conditioning (v1.10), for the parity tests; see webui_ref.py.

Written from the WebUI's sd_hijack_clip.py (FrozenCLIPEmbedderForSDXLWithCustomWords),
sd_hijack_open_clip.py (FrozenOpenCLIPEmbedder2WithCustomWords), sd_models_xl.py
(get_learned_conditioning) and sgm's encoders (FrozenCLIPEmbedder layer "hidden",
FrozenOpenCLIPEmbedder2 layer "penultimate" with the pooled output, GeneralConditioner).
Shares no code with sdcli's product modules; the "model" is a diffusers SDXL pipeline's
tokenizers, text encoders and UNet. sgm's `vector` (pooled ++ embedded size/crop) is kept
as its two inputs, `text_embeds` and `time_ids`, which diffusers' UNet embeds and joins the
same way.
"""

from __future__ import annotations

import copy

import torch

from tests.reference.webui_ref import CLIPWrapper, emphasis_after_transformers


class ZWithPooled(torch.Tensor):
    """A tensor that carries a `pooled` attribute, as the WebUI sets `z.pooled` on its outputs."""


class SDXLClipL(CLIPWrapper):
    """FrozenCLIPEmbedderForSDXLWithCustomWords around sgm's FrozenCLIPEmbedder(layer="hidden", layer_idx=-2).

    The real layer_idx is 11 of 12 layers: the penultimate hidden state, no final norm."""

    def __init__(self, tokenizer, transformer, emphasis="Original", sdxl_clip_l_skip=False, clip_skip=1):
        super().__init__(tokenizer, transformer, 1, emphasis)
        self.sdxl_clip_l_skip, self.stop_at = sdxl_clip_l_skip, clip_skip

    def encode_with_transformers(self, tokens):
        outputs = self.transformer(input_ids=tokens, output_hidden_states=True)
        if self.sdxl_clip_l_skip:
            return outputs.hidden_states[-self.stop_at]
        return outputs.hidden_states[-2]


class SDXLOpenClipG(CLIPWrapper):
    """FrozenOpenCLIPEmbedder2WithCustomWords around sgm's FrozenOpenCLIPEmbedder2(layer="penultimate").

    id_pad: 0 in open_clip's vocabulary is "!", the diffusers tokenizer_2's pad token."""

    def __init__(self, tokenizer, transformer, emphasis="Original"):
        super().__init__(tokenizer, transformer, 1, emphasis)
        self.id_pad = tokenizer.convert_tokens_to_ids("!")

    def encode_with_transformers(self, tokens):
        # sgm: run the resblocks, keep the input of the last one ("penultimate"), then ln_final on the
        # last output, pooled = x[arange, tokens.argmax(-1)] @ text_projection.
        out = self.transformer(input_ids=tokens, output_hidden_states=True)
        inner = getattr(self.transformer, "text_model", self.transformer)
        last = inner.final_layer_norm(out.hidden_states[-1])
        pooled = self.transformer.text_projection(last[torch.arange(last.shape[0]), tokens.argmax(dim=-1)])
        z = out.hidden_states[-2].as_subclass(ZWithPooled)
        z.pooled = pooled
        return z

    def process_tokens(self, remade_batch_tokens, batch_multipliers):
        tokens = torch.asarray(remade_batch_tokens)
        for batch_pos in range(len(remade_batch_tokens)):
            index = remade_batch_tokens[batch_pos].index(self.id_end)
            tokens[batch_pos, index + 1:tokens.shape[1]] = self.id_pad
        z = self.encode_with_transformers(tokens)
        pooled = z.pooled
        z = emphasis_after_transformers(self.emphasis, z.as_subclass(torch.Tensor), torch.asarray(batch_multipliers))
        z = z.as_subclass(ZWithPooled)
        z.pooled = pooled
        return z

    @torch.no_grad()
    def __call__(self, texts):
        batch_chunks = [self.tokenize_line(t)[0] for t in texts]
        chunk_count = max(len(x) for x in batch_chunks)
        zs = []
        for i in range(chunk_count):
            batch_chunk = [chunks[i] if i < len(chunks) else self.empty_chunk() for chunks in batch_chunks]
            zs.append(self.process_tokens([x.tokens for x in batch_chunk], [x.multipliers for x in batch_chunk]))
        return torch.hstack([z.as_subclass(torch.Tensor) for z in zs]), zs[0].pooled


class SDXLConditioner:
    """sd_models_xl.get_learned_conditioning + sgm's GeneralConditioner for a batch of texts."""

    def __init__(self, pipe, width, height, emphasis="Original", is_negative_prompt=False,
                 sdxl_clip_l_skip=False, clip_skip=1):
        self.clip_l = None if pipe.text_encoder is None else SDXLClipL(
            pipe.tokenizer, pipe.text_encoder, emphasis, sdxl_clip_l_skip, clip_skip)
        self.clip_g = SDXLOpenClipG(pipe.tokenizer_2, pipe.text_encoder_2, emphasis)
        self.refiner = self.clip_l is None  # its conditioner embeds an aesthetic score, not the target size
        self.width, self.height, self.is_negative_prompt = width, height, is_negative_prompt

    def negative(self):
        """The same conditioner for the negative prompt (SdConditioning's is_negative_prompt)."""
        negative = copy.copy(self)
        negative.is_negative_prompt = True
        return negative

    def __call__(self, batch):
        aesthetic_score = 2.5 if self.is_negative_prompt else 6.0  # sdxl_refiner_low/high_aesthetic_score
        n = len(batch)
        original_size = torch.tensor([self.height, self.width], dtype=torch.float32).repeat(n, 1)
        crop = torch.tensor([0, 0], dtype=torch.float32).repeat(n, 1)  # sdxl_crop_top, sdxl_crop_left
        target = (torch.tensor([aesthetic_score], dtype=torch.float32).repeat(n, 1) if self.refiner
                  else torch.tensor([self.height, self.width], dtype=torch.float32).repeat(n, 1))
        force_zero = self.is_negative_prompt and all(x == "" for x in batch)
        # GeneralConditioner: each embedder's output, zeroed for force_zero_embeddings=["txt"]; 3-D outputs
        # concatenated on the last dim as "crossattn" (CLIP-L first), 2-D ones as "vector".
        crossattn = []
        if self.clip_l is not None:
            crossattn.append(self.clip_l(batch))
        z, pooled = self.clip_g(batch)
        crossattn.append(z)
        if force_zero:
            crossattn = [torch.zeros_like(x) for x in crossattn]
            pooled = torch.zeros_like(pooled)
        return {"crossattn": torch.cat(crossattn, dim=-1), "text_embeds": pooled,
                "time_ids": torch.cat([original_size, crop, target], dim=1)}
