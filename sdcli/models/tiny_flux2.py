"""Tiny random-weight Flux.2 models (klein, dev): the real architecture at tiny widths.

A Flux2Transformer2DModel (1 double-stream and 1 single-stream block, 1 head of 32; no guidance input as
Klein, a guidance embedding as dev), a 32-channel AutoencoderKLFlux2 with 4 blocks (8x down-scaling, then the
pipeline's 2x2 patchify: 128-channel latents at 1/16 of the image side) whose batch-norm statistics are random,
and as text encoder for klein a tiny 28-layer Qwen3ForCausalLM (hidden states 9, 18 and 27 are the text, as for
the real Qwen3) with models.tiny_qwen's character-level Qwen tokenizer, for dev models.tiny_mistral's 30-layer
Mistral3ForConditionalGeneration (hidden states 10, 20, 30) and Mistral tokenizer, so every code path of a real
Flux.2 model runs in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.models.tiny_mistral import MISTRAL_TEXT, tiny_mistral3, tiny_mistral_tokenizer
from sdcli.models.tiny_qwen import tiny_qwen3, tiny_qwen_pipeline

# arch -> (pipeline class, is_distilled; None: a pipeline without that argument)
FLUX2_ARCHES = {"flux2-klein": ("Flux2KleinPipeline", True), "flux2-klein-base": ("Flux2KleinPipeline", False),
                "flux2-dev": ("Flux2Pipeline", None)}
FLUX2_QWEN3 = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 28, "num_attention_heads": 2,
               "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 1024, "rope_theta": 1e6,
               "tie_word_embeddings": True}
FLUX2_TRANSFORMER = {
    "patch_size": 1, "in_channels": 128, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 32,
    "num_attention_heads": 1, "joint_attention_dim": 3 * 32, "timestep_guidance_channels": 32, "mlp_ratio": 3.0,
    "axes_dims_rope": (8, 8, 8, 8), "rope_theta": 2000, "eps": 1e-6, "guidance_embeds": False,
}
FLUX2_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 32, "block_out_channels": (4, 4, 8, 8),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1, "norm_num_groups": 2, "sample_size": 64, "batch_norm_eps": 1e-4,
    "patch_size": (2, 2),
}
# The published scheduler config (dynamic shifting: diffusers' pipeline passes mu); sdcli's loop uses
# ComfyUI's Flux.2 sampling instead.
FLUX2_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True,
                   "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
                   "time_shift_type": "exponential"}


# Flux.2 [dev]'s transformer: Klein's with the guidance embedding, its text 3 x the tiny Mistral's 32 wide.
FLUX2_DEV_TRANSFORMER = {**FLUX2_TRANSFORMER, "joint_attention_dim": 3 * int(MISTRAL_TEXT["hidden_size"]),
                         "guidance_embeds": True}


def tiny_flux2_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Flux.2 pipeline of `arch` in memory (models.tiny_qwen.tiny_qwen_pipeline)."""
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    cls, distilled = FLUX2_ARCHES[arch]
    if distilled is None:  # dev: Mistral Small 3 as the text encoder, the guidance embedding
        return tiny_qwen_pipeline(cls, seed, config_dir, FLUX2_SCHEDULER, text_encoder=tiny_mistral3,
                                  transformer=lambda: Flux2Transformer2DModel.from_config(FLUX2_DEV_TRANSFORMER),
                                  vae=lambda: AutoencoderKLFlux2.from_config(FLUX2_VAE),
                                  settle=_randomise_batch_norm, tokenizer=tiny_mistral_tokenizer())
    return tiny_qwen_pipeline(cls, seed, config_dir, FLUX2_SCHEDULER,
                              text_encoder=lambda tokenizer: tiny_qwen3(Qwen3ForCausalLM, FLUX2_QWEN3, tokenizer),
                              transformer=lambda: Flux2Transformer2DModel.from_config(FLUX2_TRANSFORMER),
                              vae=lambda: AutoencoderKLFlux2.from_config(FLUX2_VAE), settle=_randomise_batch_norm,
                              is_distilled=distilled)


def _randomise_batch_norm(parts: dict[str, Any]) -> None:
    """The VAE's latent statistics: a clearly non-trivial per-channel mean and spread."""
    bn = parts["vae"].bn
    bn.running_mean.normal_(0.0, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
