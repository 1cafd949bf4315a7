"""Tiny random-weight Chroma: the real architecture at tiny widths (models.tiny_flux's VAE, T5 and tokenizer).

A ChromaTransformer2DModel (1 double + 1 single block, 1 head of 16, a 2-layer approximator of width 32 on
the real 64-channel timestep/guidance/index input), Flux's tiny 16-channel VAE and tiny T5 encoder with the
character-level T5 tokenizer; no CLIP. `sdcli tiny --arch chroma`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMA_TRANSFORMER = {
    "patch_size": 1, "in_channels": 64, "out_channels": 64, "num_layers": 1, "num_single_layers": 1,
    "attention_head_dim": 16, "num_attention_heads": 1, "joint_attention_dim": 32, "axes_dims_rope": (4, 4, 8),
    "approximator_num_channels": 64, "approximator_hidden_dim": 32, "approximator_layers": 2,
}
CHROMA_ARCHES = ("chroma",)


def tiny_chroma_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny Chroma pipeline in memory (its tokenizer is built in memory; `config_dir` is made, empty)."""
    import torch
    from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    from sdcli.models.tiny_flux import DEV_SCHEDULER, FLUX_T5, FLUX_VAE, randomise_norms, tiny_t5_tokenizer

    config_dir.mkdir(parents=True, exist_ok=True)  # build_tiny removes it after saving
    tokenizer = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = {
            "text_encoder": T5EncoderModel(T5Config(**FLUX_T5, vocab_size=len(tokenizer))),
            "transformer": ChromaTransformer2DModel.from_config(CHROMA_TRANSFORMER),
            "vae": AutoencoderKL.from_config(FLUX_VAE),
        }
        for model in parts.values():
            randomise_norms(model)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(DEV_SCHEDULER)
    return ChromaPipeline(scheduler=scheduler, tokenizer=tokenizer, **parts)
