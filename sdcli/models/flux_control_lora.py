"""BFL's control LoRAs (FLUX.1-Canny-dev-lora, FLUX.1-Depth-dev-lora) in diffusers' names, at any width.

A BFL control LoRA holds a LoRA pair (`M.lora_A.weight`, `M.lora_B.weight`, optionally `M.lora_B.bias`) for
every Linear of the transformer in BFL names, img_in's lora_A taking 128 inputs (the packed latent, then the
control image's packed latent), plus every block's q/k RMSNorm scale (`...query_norm.scale`), which replace the
model's. diffusers' converter (_convert_bfl_flux_control_lora_to_diffusers, 0.42) hard-codes the released
model (19 + 38 blocks, width 3072); this one takes the blocks and width from the file and the model, and
renames as diffusers' does: a fused layer's lora_A shared by its parts and its lora_B's rows split (qkv in
thirds; linear1 as q, k, v of `width` rows and the MLP's rest), final_layer.adaLN_modulation's pair with the
halves of both matrices swapped (diffusers swaps lora_A's rank rows too, so the delta is not the
(shift, scale) -> (scale, shift) swap of the BFL delta; kept here so a tiny file loads as a full one does).
diffusers' FluxLoraLoaderMixin then widens x_embedder to 128 inputs (zeros for the new columns) and loads the
norm scales into the transformer directly (not scaled by the LoRA's weight); unload_lora_weights(
reset_to_overwritten_params=True) restores both.
"""

from __future__ import annotations

import re
from typing import Any

from sdcli.models.flux_keys import BLOCKS, DOUBLE, DOUBLE_FUSED, SINGLE, SINGLE_FUSED, SWAPPED, TOP, KeyLayoutError

Tensors = dict[str, Any]
_PAIR = re.compile(r"^(.+)\.(lora_A|lora_B)\.(weight|bias)$")


def is_bfl_control(state: Tensors) -> bool:
    """diffusers' own test for a BFL control LoRA: q/k norm scales in BFL names."""
    return any("query_norm.scale" in key for key in state)


def _parts(module: str, fused: dict[str, tuple[str, ...]], plain: dict[str, str]) -> tuple[str, ...] | None:
    """The diffusers modules of a BFL block module (several for a fused one), or None."""
    if module in fused:
        return fused[module]
    return (plain[module],) if module in plain else None


def _swap(tensor: Any) -> Any:
    import torch

    first, second = torch.chunk(tensor, 2, dim=0)
    return torch.cat([second, first], dim=0)


def bfl_control_to_peft(state: Tensors, width: int) -> Tensors:
    """A BFL control LoRA for a Flux transformer `width` wide in diffusers/PEFT names ("transformer." prefixed).

    A key of neither a LoRA pair nor a norm scale of Flux raises KeyLayoutError naming it.
    """
    import torch

    out: Tensors = {}
    for key, value in state.items():
        block = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", key)
        if key.endswith(".scale"):  # a q/k norm scale: renamed as the model's own weight is
            plain = DOUBLE if block and block[1] == "double_blocks" else SINGLE
            if block is None or block[3] not in plain:
                raise KeyLayoutError(f"not a Flux control LoRA key: {key}")
            out[f"transformer.{BLOCKS[block[1]]}.{block[2]}.{plain[block[3]]}"] = value
            continue
        pair = _PAIR.fullmatch(key)
        if pair is None:
            raise KeyLayoutError(f"not a Flux control LoRA key: {key}")
        module, matrix, leaf = pair[1], pair[2], pair[3]
        if block is None:
            if module not in TOP:
                raise KeyLayoutError(f"not a Flux control LoRA key: {key}")
            out[f"transformer.{TOP[module]}.{matrix}.{leaf}"] = _swap(value) if module == SWAPPED else value
            continue
        kind, index = block[1], block[2]
        inner = _PAIR.fullmatch(block[3])
        fused, plain = (DOUBLE_FUSED, DOUBLE) if kind == "double_blocks" else (SINGLE_FUSED, SINGLE)
        names = None if inner is None else _parts(inner[1], fused, plain)
        if names is None:
            raise KeyLayoutError(f"not a Flux control LoRA key: {key}")
        prefix = f"transformer.{BLOCKS[kind]}.{index}."
        if len(names) == 1 or matrix == "lora_A":  # one module, or the down matrix every part shares
            out.update({f"{prefix}{name}.{matrix}.{leaf}": value for name in names})
            continue
        rows = int(value.shape[0])
        sizes = [rows // 3] * 3 if len(names) == 3 else [width] * 3 + [rows - 3 * width]
        parts = torch.split(value, sizes, dim=0)
        out.update({f"{prefix}{name}.{matrix}.{leaf}": part.contiguous()
                    for name, part in zip(names, parts, strict=True)})
    return out
