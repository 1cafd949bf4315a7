"""Tiny random LoRAs for a tiny Flux model folder, in kohya, diffusers/PEFT and XLabs keys.

One LoRA (a down/up pair per BFL layer, built from the folder's own tensor shapes) written in any of
the formats, so files of one seed hold the same weights: kohya stores the pair with alpha = rank / 2
(the loader folds alpha / rank in), PEFT and XLabs store it folded, split across diffusers' modules where
BFL fuses them (qkv, a single block's linear1) the way the loaders split them. The text-encoder part
(CLIP-L attention) is kohya's `lora_te1_` / PEFT's `text_encoder.`; XLabs files have none. With `t5`, every
Linear of the T5 encoder gets a pair too: kohya's `lora_te3_` (sd-scripts' prefix) / PEFT's `text_encoder_2.`.
write_tiny_flux_control_lora writes a BFL control LoRA (models.flux_control_lora) for a tiny dev folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdcli.models.flux_keys import BLOCKS, DOUBLE, DOUBLE_FUSED, SINGLE, SINGLE_FUSED, SWAPPED, TOP

FORMATS = ("kohya", "peft", "xlabs")
# BFL layers each set adapts ("attn": the ones an XLabs file can hold).
_ATTN = {"img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj", "linear1", "linear2"}
_XLABS = {"img_attn.qkv": "qkv_lora1", "txt_attn.qkv": "qkv_lora2", "img_attn.proj": "proj_lora1",
          "txt_attn.proj": "proj_lora2", "linear1": "qkv_lora", "linear2": "proj_lora"}
_TE_TARGETS = re.compile(r"^(?:text_model\.)?(encoder\.layers\.\d+\.self_attn\.(?:q|k|v|out)_proj)\.weight$")
Pair = tuple[Any, Any]  # (down [rank, in], up [out, rank]), alpha / rank folded in


def _bfl_layers(model: Path, layers: str) -> dict[str, tuple[int, int]]:
    """BFL layer name -> (in, out) features of the layers a LoRA of this `layers` set adapts."""
    from safetensors.torch import load_file

    from sdcli.models.flux_keys import diffusers_to_bfl

    state = diffusers_to_bfl(load_file(str(model / "transformer" / "diffusion_pytorch_model.safetensors")))
    found = {}
    for key, value in sorted(state.items()):
        if not key.endswith(".weight") or value.ndim != 2:
            continue
        name = key[:-len(".weight")]
        in_block = name.startswith(tuple(BLOCKS))
        if (in_block and (layers == "all" or name.split(".", 2)[2] in _ATTN)
                or layers == "all" and name in (SWAPPED, "img_in")):
            found[name] = (int(value.shape[1]), int(value.shape[0]))
    return found


def _te_layers(model: Path) -> dict[str, tuple[int, int]]:
    from safetensors import safe_open

    found = {}
    with safe_open(str(model / "text_encoder" / "model.safetensors"), "pt") as fh:
        for key in sorted(fh.keys()):  # noqa: SIM118
            if match := _TE_TARGETS.match(key):
                out, fan_in = fh.get_slice(key).get_shape()
                found["text_model." + match.group(1)] = (int(fan_in), int(out))
    return found


def _t5_layers(model: Path) -> dict[str, tuple[int, int]]:
    """T5 encoder Linear module -> (in, out) features (every 2-d weight but the token embedding)."""
    from safetensors import safe_open

    found = {}
    with safe_open(str(model / "text_encoder_2" / "model.safetensors"), "pt") as fh:
        for key in sorted(fh.keys()):  # noqa: SIM118
            shape = fh.get_slice(key).get_shape()
            if key.startswith("encoder.block.") and key.endswith(".weight") and len(shape) == 2 \
                    and "relative_attention_bias" not in key:
                found[key[:-len(".weight")]] = (int(shape[1]), int(shape[0]))
    return found


def write_tiny_flux_lora(model: Path, path: Path, *, fmt: str = "peft", seed: int = 0, rank: int = 4,
                         layers: str = "all", transformer: bool = True, text_encoder: bool = True,
                         t5: bool = False, strength: float = 0.3) -> Path:
    """A random LoRA for the tiny Flux folder `model` in `fmt` ("kohya", "peft", "xlabs"); `layers`: "all"
    (every block layer, img_in and the final modulation) or "attn" (attention only, as XLabs files hold).
    The same seed, rank and layers give the same weights in every format."""
    import torch
    from safetensors.torch import save_file

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}")
    if fmt == "xlabs" and (layers != "attn" or text_encoder):
        raise ValueError("an XLabs LoRA holds attention layers only (layers='attn', text_encoder=False)")
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    bfl = _bfl_layers(model, layers)
    width = next(out for name, (_, out) in bfl.items() if name.endswith("img_attn.proj"))
    if transformer:
        for name, (fan_in, fan_out) in bfl.items():
            down = torch.randn(rank, fan_in, generator=gen) * strength
            up = torch.randn(fan_out, rank, generator=gen) * strength
            if layers == "attn" and name.endswith("linear1"):
                up[3 * width:] = 0  # attention only: the MLP rows of the fused layer stay untouched
            state |= _write(fmt, name, (down, up), width, rank)
    if text_encoder:
        for name, (fan_in, fan_out) in _te_layers(model).items():
            pair = (torch.randn(rank, fan_in, generator=gen) * strength,
                    torch.randn(fan_out, rank, generator=gen) * strength)
            if fmt == "kohya":
                state |= _kohya("lora_te1_" + name.replace(".", "_"), pair, rank)
            else:
                state |= {f"text_encoder.{name}.lora_A.weight": pair[0], f"text_encoder.{name}.lora_B.weight": pair[1]}
    if t5:
        if fmt == "xlabs":
            raise ValueError("an XLabs LoRA holds no T5 layers")
        for name, (fan_in, fan_out) in _t5_layers(model).items():
            pair = (torch.randn(rank, fan_in, generator=gen) * strength,
                    torch.randn(fan_out, rank, generator=gen) * strength)
            if fmt == "kohya":
                state |= _kohya("lora_te3_" + name.replace(".", "_"), pair, rank)
            else:
                state |= {f"text_encoder_2.{name}.lora_A.weight": pair[0],
                          f"text_encoder_2.{name}.lora_B.weight": pair[1]}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    return path


def _kohya(name: str, pair: Pair, rank: int) -> dict[str, Any]:
    """kohya keys with alpha = rank / 2: the stored down matrix is twice the folded one."""
    import torch

    return {f"{name}.lora_down.weight": pair[0] * 2, f"{name}.lora_up.weight": pair[1],
            f"{name}.alpha": torch.tensor(rank / 2)}


def _write(fmt: str, name: str, pair: Pair, width: int, rank: int) -> dict[str, Any]:
    """One BFL layer's pair in `fmt` keys."""

    down, up = pair
    if fmt == "kohya":
        return _kohya("lora_unet_" + name.replace(".", "_"), pair, rank)
    if fmt == "xlabs":
        block, index, module = name.split(".", 2)
        rows = up[:3 * width] if module == "linear1" else up
        key = f"{block}.{index}.processor.{_XLABS[module]}"
        return {f"{key}.down.weight": down, f"{key}.up.weight": rows}
    out = {}
    for module, part in _peft_parts(name, up, width):
        out |= {f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": part}
    return out


def _peft_parts(name: str, up: Any, width: int) -> list[tuple[str, Any]]:
    """(diffusers module, its rows of `up`) for a BFL layer: fused layers split, the final modulation swapped."""
    import torch

    if name == SWAPPED:
        first, second = torch.chunk(up, 2, dim=0)
        return [(TOP[name], torch.cat([second, first]))]
    if name in TOP:
        return [(TOP[name], up)]
    block, index, module = name.split(".", 2)
    prefix = f"{BLOCKS[block]}.{index}."
    plain, fused = (DOUBLE, DOUBLE_FUSED) if block == "double_blocks" else (SINGLE, SINGLE_FUSED)
    if module in plain:
        return [(prefix + plain[module], up)]
    parts = fused[module]
    sizes = [up.shape[0] // 3] * 3 if len(parts) == 3 else [width] * 3 + [up.shape[0] - 3 * width]
    return [(prefix + p, rows) for p, rows in zip(parts, torch.split(up, sizes), strict=True)]


def write_tiny_flux_control_lora(model: Path, path: Path, *, seed: int = 0, rank: int = 4,
                                 strength: float = 0.3) -> Path:
    """A random BFL-layout control LoRA for the tiny Flux dev folder `model`, as BFL's FLUX.1-Canny/Depth-dev-lora
    hold one: a `lora_A`/`lora_B` pair for every Linear of the transformer in BFL names (img_in's lora_A taking
    twice the model's inputs: latent + control latent) and every q/k norm scale. final_layer.adaLN_modulation's
    lora_A repeats its first rank/2 rows, so diffusers' swap of its halves (models.flux_control_lora) is exact."""
    import torch
    from safetensors.torch import load_file, save_file

    from sdcli.models.flux_keys import diffusers_to_bfl

    gen = torch.Generator().manual_seed(seed)
    base = diffusers_to_bfl(load_file(str(model / "transformer" / "diffusion_pytorch_model.safetensors")))
    state: dict[str, Any] = {}
    for key, value in sorted(base.items()):
        if key.endswith(".scale"):
            state[key] = (value.float() + torch.randn(value.shape, generator=gen) * 0.1).contiguous()
        elif key.endswith(".weight") and value.ndim == 2:
            name = key[:-len(".weight")]
            fan_in = int(value.shape[1]) * (2 if name == "img_in" else 1)
            down = torch.randn(rank, fan_in, generator=gen) * strength
            if name == SWAPPED:
                down = torch.cat([down[:rank // 2]] * 2)
            state[f"{name}.lora_A.weight"] = down
            state[f"{name}.lora_B.weight"] = torch.randn(int(value.shape[0]), rank, generator=gen) * strength
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
