"""Tiny random-weight SD3 / SD3.5 models: the real architecture at tiny widths.

An SD3Transformer2DModel shaped as SD3.5 medium (2 joint blocks, the first with the second attention, RMS
QK norm; 1 head of 32, position embeddings up to 2048 px), a 16-channel 8x VAE with SD3's scaling and shift,
a tiny CLIP-L (32 wide, identity projection as in SD3 single files), a tiny OpenCLIP-bigG (48 wide: the two
differ in width as in the real model) and a tiny T5 (96 wide: the CLIP states, 32 + 48, are zero-padded to it),
with offline tiny tokenizers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SD3_ARCH = "sd3"
SD3_TRANSFORMER = {
    "_class_name": "SD3Transformer2DModel", "sample_size": 8, "patch_size": 2, "in_channels": 16, "num_layers": 2,
    "attention_head_dim": 32, "num_attention_heads": 1, "joint_attention_dim": 96, "caption_projection_dim": 32,
    "pooled_projection_dim": 32 + 48, "out_channels": 16, "pos_embed_max_size": 128, "dual_attention_layers": [0],
    "qk_norm": "rms_norm",
}
SD3_VAE = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "block_out_channels": [4, 4, 8, 8], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "norm_num_groups": 2, "sample_size": 64,
    "scaling_factor": 1.5305, "shift_factor": 0.0609, "use_quant_conv": False, "use_post_quant_conv": False,
}
SD3_CLIP_L = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4,
              "max_position_embeddings": 77, "projection_dim": 32, "hidden_act": "quick_gelu"}
SD3_CLIP_G = {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 4,
              "max_position_embeddings": 77, "projection_dim": 48, "hidden_act": "gelu"}
SD3_T5 = {"d_model": 96, "d_ff": 128, "d_kv": 16, "num_layers": 2, "num_heads": 2, "feed_forward_proj": "gated-gelu",
          "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "is_encoder_decoder": False,
          "use_cache": False, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
SD3_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}


def tiny_sd3_spec() -> dict[str, Any]:
    """The tiny model's configs in models.bundled's family layout (the bundled sd3 configs at tiny widths)."""
    from sdcli.models.bundled import TINY_VOCAB, family_config
    from sdcli.models.tokenizer_files import TINY_T5_VOCAB

    spec = family_config("sd3")
    ids = {"vocab_size": TINY_VOCAB, "pad_token_id": TINY_VOCAB - 1, "bos_token_id": TINY_VOCAB - 2,
           "eos_token_id": TINY_VOCAB - 1}
    spec.update(transformer=dict(SD3_TRANSFORMER), vae=dict(SD3_VAE), scheduler=dict(SD3_SCHEDULER))
    spec["text_encoder"] = {**spec["text_encoder"], **SD3_CLIP_L, **ids}
    spec["text_encoder_2"] = {**spec["text_encoder_2"], **SD3_CLIP_G, **ids}
    spec["text_encoder_3"] = {**spec["text_encoder_3"], **SD3_T5, "vocab_size": TINY_T5_VOCAB}
    return spec


def tiny_sd3_pipeline(arch: str, seed: int, config_dir: Path) -> Any:
    """The tiny SD3 pipeline in memory (its tokenizers are written to `config_dir` first)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
        T5TokenizerFast,
    )

    from sdcli.models.bundled import write_config_folder
    from sdcli.models.tiny_flux import randomise_norms

    spec = tiny_sd3_spec()
    write_config_folder(spec, config_dir, tokenizer="tiny")
    tokenizers = {"tokenizer": CLIPTokenizer.from_pretrained(config_dir / "tokenizer", local_files_only=True),
                  "tokenizer_2": CLIPTokenizer.from_pretrained(config_dir / "tokenizer_2", local_files_only=True),
                  "tokenizer_3": T5TokenizerFast.from_pretrained(config_dir / "tokenizer_3", local_files_only=True)}

    def config(part: str) -> dict[str, Any]:
        return {k: v for k, v in spec[part].items() if k not in ("architectures", "model_type")}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = {
            "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder"))),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2"))),
            "text_encoder_3": T5EncoderModel(T5Config(**config("text_encoder_3"))),
            "transformer": SD3Transformer2DModel.from_config(spec["transformer"]),
            "vae": AutoencoderKL.from_config(spec["vae"]),
        }
        for model in parts.values():
            randomise_norms(model)
        with torch.no_grad():  # SD3 single files carry no CLIP-L projection: diffusers makes it the identity
            parts["text_encoder"].text_projection.weight.copy_(torch.eye(SD3_CLIP_L["hidden_size"]))
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(spec["scheduler"])
    return StableDiffusion3Pipeline(scheduler=scheduler, **tokenizers, **parts)
