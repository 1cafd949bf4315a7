"""Tiny random-weight Z-Image models: the real architecture at tiny widths.

A ZImageTransformer2DModel (1 refiner block each for noise and caption, 1 main block, 1 head of 32), the
16-channel 8x VAE of tiny Flux, and a tiny Qwen3 text encoder with models.tiny_qwen's character-level BPE
tokenizer, which knows the chat template's special tokens, so every code path of a real Z-Image model runs in
milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.models.tiny_qwen import tiny_qwen3, tiny_qwen_pipeline

ZIMAGE_ARCHES = {"zimage": "ZImagePipeline"}
ZIMAGE_TRANSFORMER = {
    "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": 16, "dim": 32, "n_layers": 1,
    "n_refiner_layers": 1, "n_heads": 1, "n_kv_heads": 1, "norm_eps": 1e-5, "qk_norm": True, "cap_feat_dim": 32,
    "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [8, 12, 12], "axes_lens": [1024, 512, 512],
}
ZIMAGE_QWEN3 = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 1024, "rope_theta": 1e6,
                "tie_word_embeddings": True}
# The published scheduler config (shift 3, no dynamic shifting); sdcli's loop uses ComfyUI's table instead.
ZIMAGE_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}


def tiny_zimage_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Z-Image pipeline of `arch` in memory (models.tiny_qwen.tiny_qwen_pipeline)."""
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import Qwen3Model

    from sdcli.models.tiny_flux import FLUX_VAE

    return tiny_qwen_pipeline(ZIMAGE_ARCHES[arch], seed, config_dir, ZIMAGE_SCHEDULER,
                              text_encoder=lambda tokenizer: tiny_qwen3(Qwen3Model, ZIMAGE_QWEN3, tokenizer),
                              transformer=lambda: ZImageTransformer2DModel.from_config(ZIMAGE_TRANSFORMER),
                              vae=lambda: AutoencoderKL.from_config(FLUX_VAE))
