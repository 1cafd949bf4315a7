"""diffusers -> original (ldm/sgm, WebUI single-file) key layout, for `sdcli tiny --single-file`.

diffusers only converts the other way (original -> diffusers, in from_single_file);
writing a WebUI-layout file needs the inverse, so it is written here from the layout
rules of the original UNet/VAE/CLIP code. tests/models/test_single_file.py checks it by
loading the written file back through diffusers' own conversion: same pixels.
"""

from __future__ import annotations

import re
from typing import Any

from sdcli.families.base import UNET_PREFIX, VAE_PREFIX

# Per family: text encoder attribute -> (original prefix, "clip" (HF layout) or "openclip").
TEXT_PREFIXES: dict[str, dict[str, tuple[str, str]]] = {
    "sd1": {"text_encoder": ("cond_stage_model.transformer.", "clip")},
    "sd2": {"text_encoder": ("cond_stage_model.model.", "openclip")},
    "sdxl": {"text_encoder": ("conditioner.embedders.0.transformer.", "clip"),
             "text_encoder_2": ("conditioner.embedders.1.model.", "openclip")},
    "sdxl-refiner": {"text_encoder_2": ("conditioner.embedders.0.model.", "openclip")},
}
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPENCLIP_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
                "embeddings.position_embedding.weight": "positional_embedding",
                "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                  "self_attn.out_proj": "attn.out_proj"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def unet_key(key: str, config: Any) -> str:
    """One diffusers UNet key in the original layout (input_blocks / middle_block / output_blocks)."""
    per = config.layers_per_block + 1  # resnets + a down/up-sampler slot per level
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = "0." + _rename(rest, UNET_RESNET) if kind == "resnets" else "1." + rest
        return f"input_blocks.{1 + i * per + j}.{slot}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename(m[2], UNET_RESNET)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = "0." + _rename(rest, UNET_RESNET) if kind == "resnets" else "1." + rest
        return f"output_blocks.{i * per + j}.{slot}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        i = int(m[1])
        slot = 2 if config.up_block_types[i].startswith("CrossAttn") else 1
        return f"output_blocks.{i * per + config.layers_per_block}.{slot}.conv.{m[2]}"
    return _rename(key, UNET_TOP)


def vae_key(key: str, levels: int) -> str:
    """One diffusers VAE key in the original layout (encoder.down.i.block.j, decoder.up reversed)."""
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0)\.(.*)", key):
        part = f"block.{m[3]}" if m[3] is not None else "downsample"
        return f"encoder.down.{m[1]}.{part}.{m[4]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.*)", key):
        part = f"block.{m[3]}" if m[3] is not None else "upsample"
        return f"decoder.up.{levels - 1 - int(m[1])}.{part}.{m[4]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
        return f"{m[1]}.mid.attn_1.{_rename(m[2], VAE_ATTENTION)}"
    return key


def openclip_state(state: dict[str, Any]) -> dict[str, Any]:
    """An HF CLIP text model's weights in OpenCLIP layout (fused q/k/v, transposed projection)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key in OPENCLIP_TOP:
            out[OPENCLIP_TOP[key]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", key):
            layer, rest = f"transformer.resblocks.{m[1]}.", m[2]
            if qkv := re.match(r"self_attn\.q_proj\.(weight|bias)", rest):
                parts = [state.get(f"{p}encoder.layers.{m[1]}.self_attn.{n}_proj.{qkv[1]}")
                         for n in "qkv" for p in ("", "text_model.")]
                out[f"{layer}attn.in_proj_{qkv[1]}"] = torch.cat([p for p in parts if p is not None])
            elif not re.match(r"self_attn\.[kv]_proj\.", rest):
                out[layer + _rename(rest, OPENCLIP_LAYER)] = value
    return out


def original_state_dict(pipe: Any, family: str) -> dict[str, Any]:
    """Every weight of a loaded SD/SDXL pipeline under its original single-file key."""
    out: dict[str, Any] = {}
    for key, value in pipe.unet.state_dict().items():
        out[UNET_PREFIX + unet_key(key, pipe.unet.config)] = value
    levels = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        new = vae_key(key, levels)
        if ".mid.attn_1." in new and new.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        out[VAE_PREFIX + new] = value
    for attr, (prefix, layout) in TEXT_PREFIXES[family].items():
        state = getattr(pipe, attr).state_dict()
        if layout == "openclip":
            out.update({prefix + k: v for k, v in openclip_state(state).items()})
        else:
            out.update({prefix + "text_model." + k.removeprefix("text_model."): v for k, v in state.items()
                        if not k.endswith("position_ids")})
    return {k: v.contiguous() for k, v in out.items()}
