"""Flux.1 key layouts: BFL (the original flux code, ComfyUI, city96's GGUFs) <-> diffusers, shape-generic.

diffusers' convert_flux_transformer_checkpoint_to_diffusers hard-codes the full model's width
(3072) for the split of each single block's fused linear1, so a Flux transformer of another width
(sdcli's tiny ones) cannot go through it. Here one table of BFL <-> diffusers names serves both
directions, and every split size comes from the tensors: the width from `img_in.weight`'s rows,
the MLP width from the rest of `linear1`. Splits and concatenations use torch.split/torch.cat,
which diffusers' GGUFParameter keeps quantized (rows are quantized independently, so splitting a
quantized weight along its rows needs no dequantization).

The prefixes below are the ones ComfyUI writes for Flux (supported_models.Flux: vae_key_prefix
"vae.", text_encoder_key_prefix "text_encoders."; the base class saves the model under
"model.diffusion_model.") and that diffusers' single-file code reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Prefixes of the components of a ComfyUI / Comfy-Org all-in-one Flux checkpoint.
COMFY_TRANSFORMER = "model.diffusion_model."
COMFY_CLIP_L = "text_encoders.clip_l.transformer."
COMFY_T5 = "text_encoders.t5xxl.transformer."
COMFY_VAE = "vae."
LDM_VAE = "first_stage_model."  # the older ldm checkpoint prefix, also accepted for the VAE
DIFFUSERS_TRANSFORMER = "transformer."  # a diffusers transformer state dict saved from a pipeline
FULL_WIDTH = 3072  # the released Flux.1 models' width: the one diffusers' converter supports

# BFL module -> diffusers module (".weight"/".bias" follow unchanged), outside the blocks.
TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",  # (shift, scale) in BFL, (scale, shift) in diffusers
}
SWAPPED = "final_layer.adaLN_modulation.1"
# Inside double_blocks.{i} <-> transformer_blocks.{i}.
DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
# Inside single_blocks.{i} <-> single_transformer_blocks.{i}.
SINGLE = {
    "modulation.lin": "norm.linear",
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
    "linear2": "proj_out",
}
SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
BLOCKS = {"double_blocks": "transformer_blocks", "single_blocks": "single_transformer_blocks"}

Tensors = dict[str, Any]


class KeyLayoutError(ValueError):
    """A state dict that does not fit the layout it is converted from (names the keys)."""


def strip_prefix(state: Tensors, prefix: str) -> Tensors:
    """The entries of `state` under `prefix`, with the prefix removed (all of them when prefix is "")."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(state: Tensors, prefix: str) -> Tensors:
    """`state` with every key under `prefix`."""
    return {prefix + k: v for k, v in state.items()}


def _swap_halves(tensor: Any) -> Any:
    """(a, b) -> (b, a) along dim 0: BFL's (shift, scale) <-> diffusers' (scale, shift); its own inverse."""
    import torch

    first, second = torch.chunk(tensor, 2, dim=0)
    return torch.cat([second, first], dim=0)


def _rename(rest: str, table: dict[str, str]) -> str | None:
    """`rest` (module.param) renamed through a module or parameter table, or None."""
    if rest in table:
        return table[rest]
    module, _, leaf = rest.rpartition(".")
    return f"{table[module]}.{leaf}" if module in table else None


def bfl_width(state: Tensors) -> int:
    """The transformer's hidden width, from the rows of img_in.weight."""
    if "img_in.weight" not in state:
        raise KeyLayoutError("no img_in.weight: not a Flux transformer in BFL layout")
    return int(state["img_in.weight"].shape[0])


def bfl_to_diffusers(state: Tensors) -> Tensors:
    """A BFL-layout Flux transformer state dict in diffusers' names, for any width (shape-generic).

    Every key must be consumed; a leftover key raises KeyLayoutError naming it.
    """
    import torch

    width = bfl_width(state)
    out: Tensors = {}
    left = []
    for key, value in state.items():
        if key.startswith(SWAPPED + "."):
            out[f"{TOP[SWAPPED]}.{key.rsplit('.', 1)[1]}"] = _swap_halves(value)
        elif (new := _rename(key, TOP)) is not None:
            out[new] = value
        elif m := re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", key):
            kind, index, rest = m[1], m[2], m[3]
            prefix = f"{BLOCKS[kind]}.{index}."
            plain, fused = (DOUBLE, DOUBLE_FUSED) if kind == "double_blocks" else (SINGLE, SINGLE_FUSED)
            module, _, leaf = rest.rpartition(".")
            if module in fused:
                rows = int(value.shape[0])
                sizes = [rows // 3] * 3 if len(fused[module]) == 3 else [width] * 3 + [rows - 3 * width]
                parts = torch.split(value, sizes, dim=0)
                out.update({f"{prefix}{name}.{leaf}": part for name, part in zip(fused[module], parts, strict=True)})
            elif (new := _rename(rest, plain)) is not None:
                out[prefix + new] = value
            else:
                left.append(key)
        else:
            left.append(key)
    if left:
        raise KeyLayoutError(f"keys that are not Flux transformer weights: {', '.join(sorted(left)[:5])}")
    return out


def diffusers_to_bfl(state: Tensors) -> Tensors:
    """A diffusers FluxTransformer2DModel state dict in BFL names (what the flux code, ComfyUI and GGUFs use)."""
    import torch

    out: Tensors = {}
    back_top = {v: k for k, v in TOP.items()}
    blocks_back = {v: k for k, v in BLOCKS.items()}
    fused_parts: set[str] = set()
    for key, value in state.items():
        if m := re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", key):
            kind, index, rest = blocks_back[m[1]], m[2], m[3]
            prefix = f"{m[1]}.{index}."
            plain, fused = (DOUBLE, DOUBLE_FUSED) if kind == "double_blocks" else (SINGLE, SINGLE_FUSED)
            module, _, leaf = rest.rpartition(".")
            hit = next((b for b, parts in fused.items() if module in parts), None)
            if hit is not None:
                if module == fused[hit][0]:  # the first part gathers the rest
                    names = [f"{prefix}{p}.{leaf}" for p in fused[hit]]
                    if absent := [n for n in names if n not in state]:
                        raise KeyLayoutError(f"a fused weight lacks its parts: {', '.join(absent)}")
                    out[f"{kind}.{index}.{hit}.{leaf}"] = torch.cat([state[n] for n in names], dim=0)
                    fused_parts.update(names)
                continue
            new = _rename(rest, {v: k for k, v in plain.items()})
            if new is None:
                raise KeyLayoutError(f"not a Flux transformer key: {key}")
            out[f"{kind}.{index}.{new}"] = value
        elif (new := _rename(key, back_top)) is not None:
            out[new] = _swap_halves(value) if new.startswith(SWAPPED + ".") else value
        else:
            raise KeyLayoutError(f"not a Flux transformer key: {key}")
    missing = {k for k in state if re.search(r"\.(attn\.to_[qkv]|attn\.add_[qkv]_proj|proj_mlp)\.", k)} - fused_parts
    if missing:
        raise KeyLayoutError(f"fused parts without their first part: {', '.join(sorted(missing)[:5])}")
    return out


def transformer_to_diffusers(state: Tensors) -> Tensors:
    """BFL (or ComfyUI-prefixed) Flux transformer weights in diffusers' names.

    The released width goes through diffusers' own converter; any other width through
    bfl_to_diffusers, whose split sizes come from the tensors' shapes.
    """
    if any(k.startswith(COMFY_TRANSFORMER) for k in state):
        state = strip_prefix(state, COMFY_TRANSFORMER)
    if bfl_width(state) != FULL_WIDTH:
        return bfl_to_diffusers(state)
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    remaining = dict(state)  # diffusers' converter pops what it uses: what is left was not converted
    out: Tensors = convert_flux_transformer_checkpoint_to_diffusers(remaining)
    if remaining:
        raise KeyLayoutError(f"keys that are not Flux transformer weights: {', '.join(sorted(remaining)[:5])}")
    return out


# --- the VAE: BFL's ae.safetensors uses the ldm VAE layout (no quant_conv / post_quant_conv) ---

def vae_to_diffusers(state: Tensors, config: dict[str, Any]) -> Tensors:
    """An ldm/BFL-layout VAE state dict (bare, "vae." or "first_stage_model.") in diffusers' names."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return dict(convert_ldm_vae_checkpoint(state, config))


def vae_to_ldm(state: Tensors, levels: int) -> Tensors:
    """A diffusers AutoencoderKL state dict in the ldm/BFL layout (1x1 convolutions in the mid attention)."""
    from sdcli.models.original_keys import vae_key

    out: Tensors = {}
    for key, value in state.items():
        new = vae_key(key, levels)
        if ".mid.attn_1." in new and new.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[new] = value
    return out


# --- text encoders: transformers state dicts, standalone (maybe prefixed) or under ComfyUI's prefixes ---

def text_encoder_state(state: Tensors, expected: set[str], drop: Callable[[str], bool] | None = None) -> Tensors:
    """A CLIP/T5 state dict in the keys of the transformers model that expects `expected`.

    Files keep CLIP under "text_model." (transformers < 5.6 layout, ComfyUI, HF repos); the
    flattened CLIPTextModel of transformers >= 5.6 has no such level. Keys that `drop` accepts
    (position ids, CLIP's unused projection and logit scale) are removed.
    """
    out: Tensors = {}
    for key, value in state.items():
        if drop is not None and drop(key):
            continue
        if key not in expected:
            if key.startswith("text_model.") and key[len("text_model."):] in expected:
                key = key[len("text_model."):]
            elif "text_model." + key in expected:
                key = "text_model." + key
        out[key] = value
    return out


def clip_drop(key: str) -> bool:
    """Keys of CLIP-L files that CLIPTextModel has no parameter for."""
    return key.endswith("position_ids") or key in {"text_projection.weight", "logit_scale",
                                                   "text_model.text_projection.weight"}


def t5_state_for_saving(state: Tensors) -> Tensors:
    """A T5EncoderModel state dict as files store it: the tied embedding once, as shared.weight."""
    return {k: v for k, v in state.items() if k != "encoder.embed_tokens.weight"}


def clip_state_for_saving(state: Tensors) -> Tensors:
    """A CLIPTextModel state dict as files store it: under "text_model." (the layout before transformers 5.6)."""
    return {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in state.items()
            if not k.endswith("position_ids")}
