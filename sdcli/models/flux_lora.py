"""Flux LoRA files before diffusers' FluxLoraLoaderMixin loads them: kohya files of a width diffusers'
converter cannot take.

diffusers' kohya Flux converter (_convert_kohya_flux_lora_to_diffusers) splits each single block's fused
linear1 at the released width (3072), so a kohya LoRA for a narrower transformer (sdcli's tiny ones)
fails its assertion. For those, kohya_to_peft renames the transformer part to diffusers/PEFT names with
the BFL <-> diffusers tables of flux_keys, splitting fused layers by the model's width the way diffusers
does (the up matrix's rows split, the down matrix shared, alpha / rank folded in with diffusers' split of
the scale); the CLIP-L part still goes through diffusers' converter. At the released width every kohya
file goes through diffusers unchanged. A slow test checks both agree at full width.
"""

from __future__ import annotations

import re
from typing import Any

from sdcli.models.flux_keys import DOUBLE, DOUBLE_FUSED, SINGLE, SINGLE_FUSED, SWAPPED, TOP, KeyLayoutError

Tensors = dict[str, Any]
KOHYA_UNET = "lora_unet_"


def is_kohya(state: Tensors) -> bool:
    """A kohya/sd-scripts file (what diffusers' Flux loader sends to its kohya converter)."""
    return any(".lora_down.weight" in k for k in state)


def _modules(table: dict[str, str]) -> dict[str, str]:
    """A flux_keys table's Linear modules (not the norm scales) in kohya spelling -> diffusers module."""
    return {bfl.replace(".", "_"): new for bfl, new in table.items() if not bfl.endswith(".scale")}


_TOP = _modules(TOP)
_DOUBLE = _modules(DOUBLE)
_SINGLE = _modules(SINGLE)
_DOUBLE_FUSED = {bfl.replace(".", "_"): parts for bfl, parts in DOUBLE_FUSED.items()}
_SINGLE_FUSED = {bfl.replace(".", "_"): parts for bfl, parts in SINGLE_FUSED.items()}


def _folded(down: Any, up: Any, alpha: Any) -> tuple[Any, Any]:
    """alpha / rank folded into the pair, split between them as diffusers' converter splits it."""
    scale = (float(alpha) if alpha is not None else down.shape[0]) / down.shape[0]
    scale_down, scale_up = scale, 1.0
    while scale_down * 2 < scale_up:
        scale_down, scale_up = scale_down * 2, scale_up / 2
    return down * scale_down, up * scale_up


def _targets(name: str, rows: int, width: int) -> list[tuple[str, int]] | None:
    """(diffusers module, rows of the up matrix) for a kohya transformer layer name, or None if unknown."""
    rest = name[len(KOHYA_UNET):]
    if rest in _TOP:
        return [(_TOP[rest], rows)]
    m = re.fullmatch(r"(double|single)_blocks_(\d+)_(.+)", rest)
    if not m:
        return None
    kind, index, module = m[1], m[2], m[3]
    prefix = f"{'transformer_blocks' if kind == 'double' else 'single_transformer_blocks'}.{index}."
    plain, fused = (_DOUBLE, _DOUBLE_FUSED) if kind == "double" else (_SINGLE, _SINGLE_FUSED)
    if module in plain:
        return [(prefix + plain[module], rows)]
    if module in fused:
        parts = fused[module]
        sizes = [rows // 3] * 3 if len(parts) == 3 else [width] * 3 + [rows - 3 * width]
        return [(prefix + part, size) for part, size in zip(parts, sizes, strict=True)]
    return None


def kohya_to_peft(state: Tensors, width: int) -> Tensors:
    """A kohya Flux LoRA for a transformer `width` wide in diffusers/PEFT names (see the module doc).

    The transformer part is renamed here; the text-encoder part goes through diffusers' own converter.
    A key of neither raises KeyLayoutError naming it.
    """
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    layers = {k.rsplit(".", 2)[0] if not k.endswith(".alpha") else k[:-len(".alpha")]
              for k in state if k.startswith(KOHYA_UNET)}
    out: Tensors = {}
    for name in sorted(layers):
        down, up = state.get(f"{name}.lora_down.weight"), state.get(f"{name}.lora_up.weight")
        targets = None if down is None or up is None else _targets(name, int(up.shape[0]), width)
        if targets is None:
            raise KeyLayoutError(f"not a Flux transformer LoRA layer: {name}")
        down, up = _folded(down, up, state.get(f"{name}.alpha"))
        if name == KOHYA_UNET + SWAPPED.replace(".", "_"):
            first, second = torch.chunk(up, 2, dim=0)  # BFL's (shift, scale) -> diffusers' (scale, shift)
            up = torch.cat([second, first], dim=0)
        ups = torch.split(up, [size for _, size in targets], dim=0)
        for (module, _), part in zip(targets, ups, strict=True):
            out[f"transformer.{module}.lora_A.weight"] = down
            out[f"transformer.{module}.lora_B.weight"] = part.contiguous()
    rest = {k: v for k, v in state.items() if not k.startswith(KOHYA_UNET)}
    if unknown := sorted(k for k in rest if not k.startswith(("lora_te_", "lora_te1_"))):
        raise KeyLayoutError(f"not a Flux LoRA layer: {', '.join(unknown[:3])}")
    if rest:
        out.update(_convert_kohya_flux_lora_to_diffusers(rest))
    return out

