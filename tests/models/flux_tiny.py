"""Tiny Flux.1 components built directly with diffusers/transformers classes, for the file-layer tests."""

from __future__ import annotations

from typing import Any

import torch

TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=8,
                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                   guidance_embeds=True, axes_dims_rope=(2, 2, 4))
# 32 wide (2 heads of 16): every fused weight's rows divide into Q8_0 blocks of 32, so GGUF files quantize them.
WIDE = dict(TRANSFORMER, attention_head_dim=16, axes_dims_rope=(4, 4, 8))
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
           up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[16, 32], layers_per_block=1,
           latent_channels=16, norm_num_groups=8, sample_size=32, use_quant_conv=False,
           use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
CLIP = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
T5 = dict(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=600, feed_forward_proj="gated-gelu")


def randomise(model: Any, seed: int) -> Any:
    """Every parameter random (norm scales too), so a swapped or misplaced tensor changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def transformer(seed: int = 0, **over: Any) -> Any:
    from diffusers import FluxTransformer2DModel

    return randomise(FluxTransformer2DModel(**{**TRANSFORMER, **over}), seed)


def components(seed: int = 0) -> dict[str, Any]:
    """A FluxPipeline's four weighted components, tiny and random."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    return {"transformer": transformer(seed),
            "vae": randomise(AutoencoderKL(**VAE), seed + 1),
            "text_encoder": randomise(CLIPTextModel(CLIPTextConfig(**CLIP)), seed + 2),
            "text_encoder_2": randomise(T5EncoderModel(T5Config(**T5)), seed + 3)}


def transformer_inputs(model: Any, seed: int = 5) -> dict[str, Any]:
    """One forward pass's inputs for a tiny Flux transformer (4x4 packed latent tokens, 6 text tokens)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    tokens, text = 16, 6
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"),
                          -1).reshape(tokens, 3)
    args = dict(hidden_states=torch.randn(1, tokens, cfg.in_channels, generator=gen),
                encoder_hidden_states=torch.randn(1, text, cfg.joint_attention_dim, generator=gen),
                pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=gen),
                timestep=torch.tensor([0.7]), img_ids=img_ids, txt_ids=torch.zeros(text, 3), return_dict=False)
    if cfg.guidance_embeds:
        args["guidance"] = torch.tensor([3.5])
    return args


def run(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs)[0]
