"""Tiny random LoRAs for sdcli's tiny flow-family folders (sd3, zimage, chroma, qwen-image, flux2-klein,
flux2-dev), in the formats people publish for those families.

One random pair per layer of the family's original module tree (models.flow_lora's layouts, built from the folder's
own transformer names and shapes; a fused layer gets one pair), so files of one seed hold the same weights in every
format. Formats (`fmt`):
- "peft": diffusers/PEFT names, `transformer.<module>.lora_A/B.weight`, a fused layer split as the loaders split it;
- "kohya": sd-scripts' `lora_unet_<original name, '.' -> '_'>.lora_down/lora_up.weight` with alpha = rank / 2 (the
  stored down matrix is twice the folded one);
- "comfy": ComfyUI's / ai-toolkit's original names, `diffusion_model.<original>.lora_A/B.weight`;
- "comfy-kohya": the same names with lora_down/lora_up and alpha (ComfyUI's own LoRA training saves these);
- "musubi": kohya keys over diffusers module names (musubi-tuner's and kohya's Qwen-Image/Z-Image files);
- "aitoolkit": `diffusion_model.<diffusers module>.lora_A/B.weight` (ai-toolkit's Z-Image files);
- "lightning": unprefixed diffusers names with lora_down/lora_up and alpha (lightx2v's Qwen-Image-Lightning).
With `text_encoders` (SD3), the CLIP-L and CLIP-G attention layers and every T5-XXL Linear get pairs too: PEFT's
`text_encoder.` / `text_encoder_2.` / `text_encoder_3.`, kohya's `lora_te1_` / `lora_te2_` / `lora_te3_`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdcli.models.flow_lora import KOHYA, LAYOUTS, swap_halves

# sdcli.models.tiny's arch -> its layout in models.flow_lora.LAYOUTS
ARCH_LAYOUTS = {"sd3": "sd3", "zimage": "zimage", "chroma": "bfl", "qwen-image": "identity", "flux2-klein": "flux2",
                "flux2-dev": "flux2"}
FORMATS = ("peft", "kohya", "comfy", "comfy-kohya", "musubi", "aitoolkit", "lightning")
_PER_MODULE = ("peft", "musubi", "aitoolkit", "lightning")  # formats in diffusers' module names
# The text-encoder layers SD3 LoRAs hold here: CLIP-L/G attention, every T5-XXL Linear; kohya prefix per encoder.
_TEXT_LAYERS = re.compile(r"^text_model\.encoder\.layers\.\d+\.self_attn\.(?:q|k|v|out)_proj$"
                          r"|^encoder\.block\.\d+\.layer\.\d+\.(?:SelfAttention\.[qkvo]|DenseReluDense\.\w+)$")
_TEXT_ENCODERS = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_", "text_encoder_3": "lora_te3_"}


def _linear_shapes(file: Path) -> dict[str, tuple[int, int]]:
    """Module -> (in, out) features of every 2-d weight of a safetensors file."""
    from safetensors import safe_open

    found = {}
    with safe_open(str(file), "pt") as fh:
        for key in sorted(fh.keys()):  # noqa: SIM118 - safe_open has no iteration
            shape = fh.get_slice(key).get_shape()
            if key.endswith(".weight") and len(shape) == 2:
                found[key[:-len(".weight")]] = (int(shape[1]), int(shape[0]))
    return found


def _pair_keys(fmt: str, name: str, down: Any, up: Any, rank: int) -> dict[str, Any]:
    """One layer's pair (alpha / rank folded in) under `name` in `fmt`'s spelling."""
    import torch

    if fmt in ("kohya", "musubi", "lightning", "comfy-kohya"):
        stem = {"lightning": name, "comfy-kohya": f"diffusion_model.{name}"}.get(fmt, KOHYA + name.replace(".", "_"))
        return {f"{stem}.lora_down.weight": down * 2, f"{stem}.lora_up.weight": up,
                f"{stem}.alpha": torch.tensor(rank / 2)}
    prefix = "transformer." if fmt == "peft" else "diffusion_model."
    return {f"{prefix}{name}.lora_A.weight": down, f"{prefix}{name}.lora_B.weight": up}


def write_tiny_flow_lora(model: Path, path: Path, arch: str, *, fmt: str = "peft", seed: int = 0, rank: int = 4,
                         strength: float = 0.3, exclude: tuple[str, ...] = (), text_encoders: bool = False) -> Path:
    """A random LoRA for the tiny `arch` folder `model` in `fmt` (see the module doc). `exclude`: original layer
    names containing any of these are left out. The same seed, rank and layers give the same weights in every
    format."""
    import torch
    from safetensors.torch import save_file

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}")
    gen = torch.Generator().manual_seed(seed)
    shapes = _linear_shapes(model / "transformer" / "diffusion_pytorch_model.safetensors")
    layout = LAYOUTS[ARCH_LAYOUTS[arch]](shapes)
    state: dict[str, Any] = {}
    for name, (modules, swap) in sorted(layout.items()):
        if any(part in name for part in exclude):
            continue
        sizes = [shapes[m][1] for m in modules]
        down = torch.randn(rank, shapes[modules[0]][0], generator=gen) * strength
        up = torch.randn(sum(sizes), rank, generator=gen) * strength
        if fmt not in _PER_MODULE:
            state |= _pair_keys(fmt, name, down, up, rank)
            continue
        for module, part in zip(modules, torch.split(swap_halves(up) if swap else up, sizes), strict=True):
            state |= _pair_keys(fmt, module, down, part, rank)
    if text_encoders:
        for component, kohya in _TEXT_ENCODERS.items():
            for name, (fan_in, fan_out) in _linear_shapes(model / component / "model.safetensors").items():
                if not _TEXT_LAYERS.match(name):
                    continue
                down = torch.randn(rank, fan_in, generator=gen) * strength
                up = torch.randn(fan_out, rank, generator=gen) * strength
                if fmt == "kohya":
                    kohya_name = kohya + name.replace(".", "_")
                    state |= {f"{kohya_name}.lora_down.weight": down * 2, f"{kohya_name}.lora_up.weight": up,
                              f"{kohya_name}.alpha": torch.tensor(rank / 2)}
                else:
                    state |= {f"{component}.{name}.lora_A.weight": down, f"{component}.{name}.lora_B.weight": up}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    return path
