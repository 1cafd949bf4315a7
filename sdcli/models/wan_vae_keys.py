"""Wan 2.1 VAE key names (Qwen-Image's VAE as ComfyUI ships it: qwen_image_vae.safetensors) <-> diffusers', at any
size.

diffusers' convert_wan_vae_to_diffusers numbers the decoder's up blocks for the released block counts (two
residual blocks a level), so a VAE of other counts (sdcli's tiny one) cannot go through it. The original decoder
is one flat list (`decoder.upsamples.{j}`: each level's residual blocks, then its upsampler), diffusers' is
nested (`decoder.up_blocks.{b}.resnets.{r}`, `.upsamplers.0`); here the flat index comes from the diffusers
model's own key set, so one name function serves both directions. Everything else is a fixed renaming.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Inside a residual block: diffusers -> original.
RESIDUAL = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."), ("norm2.gamma", "residual.3.gamma"),
            ("conv2.", "residual.6."), ("conv_shortcut.", "shortcut."))
# Outside the blocks: diffusers -> original (prefix renames, in order).
FIXED = (("quant_conv.", "conv1."), ("post_quant_conv.", "conv2."), ("encoder.conv_in.", "encoder.conv1."),
         ("decoder.conv_in.", "decoder.conv1."), ("encoder.norm_out.", "encoder.head.0."),
         ("decoder.norm_out.", "decoder.head.0."), ("encoder.conv_out.", "encoder.head.2."),
         ("decoder.conv_out.", "decoder.head.2."))


def _residual(rest: str) -> str:
    """A residual block's parameter in the original names."""
    for ours, theirs in RESIDUAL:
        if rest.startswith(ours):
            return theirs + rest[len(ours):]
    return rest  # resample.*, time_conv.*: the same in both


def _flat_decoder(keys: Iterable[str]) -> dict[tuple[int, str], int]:
    """(up block, "r{i}" or "up") -> the original flat index: each level's resnets, then its upsampler."""
    parts = set()
    for key in keys:
        if m := re.match(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.", key):
            parts.add((int(m[1]), 0 if m[3] is not None else 1, int(m[3] or 0)))
    return {(b, f"r{i}" if kind == 0 else "up"): j for j, (b, kind, i) in enumerate(sorted(parts))}


def to_wan_name(key: str, flat: dict[tuple[int, str], int]) -> str:
    """One diffusers AutoencoderKLQwenImage key in Wan 2.1's original names (`flat`: _flat_decoder's table)."""
    for ours, theirs in FIXED:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = 1 if m[2] == "attentions" else 2 * int(m[3])
        return f"{m[1]}.middle.{index}.{m[4] if m[2] == 'attentions' else _residual(m[4])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key):
        return f"encoder.downsamples.{m[1]}.{_residual(m[2])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.upsamples.{flat[(int(m[1]), f'r{m[2]}')]}.{_residual(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.upsamples.{flat[(int(m[1]), 'up')]}.{m[2]}"
    return key


def diffusers_to_wan(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers AutoencoderKLQwenImage state dict in Wan 2.1's original names."""
    flat = _flat_decoder(state)
    return {to_wan_name(k, flat): v for k, v in state.items()}


def wan_to_diffusers(state: dict[str, Any], expected: Iterable[str]) -> dict[str, Any]:
    """Wan 2.1-named VAE weights in the names of the diffusers model whose keys are `expected` (a key that fits
    none keeps its name, for the strict key check to name)."""
    expected = list(expected)
    flat = _flat_decoder(expected)
    names = {to_wan_name(k, flat): k for k in expected}
    return {names.get(k, k): v for k, v in state.items()}
