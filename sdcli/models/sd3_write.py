"""SD3 / SD3.5 all-in-one single files: a diffusers SD3 pipeline's weights under the original keys that
diffusers' StableDiffusion3Pipeline.from_single_file reads (loaders/single_file_utils.py: the MMDiT under
model.diffusion_model., the VAE under first_stage_model., text_encoders.clip_l/clip_g/t5xxl.transformer.*).

The inverse of diffusers' convert_sd3_transformer_checkpoint_to_diffusers: q/k/v fused into qkv, the final
norms' (scale, shift) halves swapped back to SAI's (shift, scale); CLIP-L without its projection (diffusers
makes it the identity), bigG and T5 in Hugging Face layout. Shape-generic: tiny models are written the same way.
"""

from __future__ import annotations

from typing import Any

from sdcli.families.base import UNET_PREFIX, VAE_PREFIX

TEXT_PREFIXES = {"text_encoder": "text_encoders.clip_l.transformer.",
                 "text_encoder_2": "text_encoders.clip_g.transformer.",
                 "text_encoder_3": "text_encoders.t5xxl.transformer."}
# diffusers block key -> SAI key (x_block: the image stream; context_block: the text stream).
BLOCK_KEYS = {
    "attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
    "attn2.to_out.0": "x_block.attn2.proj", "attn.norm_q": "x_block.attn.ln_q", "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q", "attn.norm_added_k": "context_block.attn.ln_k",
    "attn2.norm_q": "x_block.attn2.ln_q", "attn2.norm_k": "x_block.attn2.ln_k",
    "norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2",
}
FUSED = {"attn.to_": "x_block.attn.qkv", "attn.add_": "context_block.attn.qkv", "attn2.to_": "x_block.attn2.qkv"}
TOP_KEYS = {
    "pos_embed.pos_embed": "pos_embed", "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2", "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear", "norm_out.linear": "final_layer.adaLN_modulation.1",
}


def _swap_halves(value: Any) -> Any:
    """(scale, shift) -> (shift, scale) along dim 0, and back: swapping two halves is its own inverse."""
    import torch

    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def mmdit_state(state: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """A diffusers SD3Transformer2DModel state dict in SAI's MMDiT layout (no prefix)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        stem, _, leaf = key.rpartition(".")
        if stem in TOP_KEYS or key in TOP_KEYS:
            new = TOP_KEYS[key] if key in TOP_KEYS else f"{TOP_KEYS[stem]}.{leaf}"
            out[new] = _swap_halves(value) if stem == "norm_out.linear" else value
            continue
        _, index, rest = stem.split(".", 2) if stem.startswith("transformer_blocks.") else ("", "", stem)
        if rest in BLOCK_KEYS:
            last = int(index) == num_layers - 1 and rest == "norm1_context.linear"
            out[f"joint_blocks.{index}.{BLOCK_KEYS[rest]}.{leaf}"] = _swap_halves(value) if last else value
            continue
        for start, fused in FUSED.items():
            if rest.startswith(start) and rest[len(start):] in ("q", "q_proj"):
                block = f"transformer_blocks.{index}.{start}"
                suffix = "_proj" if rest.endswith("_proj") else ""
                parts = [state[f"{block}{n}{suffix}.{leaf}"] for n in "qkv"]
                out[f"joint_blocks.{index}.{fused}.{leaf}"] = torch.cat(parts, dim=0)
    return out


def original_sd3_state_dict(pipe: Any) -> dict[str, Any]:
    """Every weight of a loaded SD3 pipeline under its all-in-one single-file key."""
    from sdcli.models.original_keys import vae_key

    transformer = pipe.transformer
    out = {UNET_PREFIX + k: v for k, v in mmdit_state(transformer.state_dict(),
                                                      int(transformer.config.num_layers)).items()}
    levels = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        new = vae_key(key, levels)
        if ".mid.attn_1." in new and new.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        out[VAE_PREFIX + new] = value
    for attr, prefix in TEXT_PREFIXES.items():
        for key, value in getattr(pipe, attr).state_dict().items():
            if key.endswith("position_ids") or (attr == "text_encoder" and key.startswith("text_projection")):
                continue
            if attr != "text_encoder_3" and not key.startswith(("text_model.", "text_projection")):
                key = "text_model." + key
            out[prefix + key] = value
    return {k: v.clone().contiguous() for k, v in out.items()}  # T5's tied embeddings: separate tensors
