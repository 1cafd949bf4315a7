"""All-in-one checkpoints of the flow families (Z-Image, Chroma, Qwen-Image, Flux.2 klein) as ComfyUI saves them.

ComfyUI's checkpoint saver (comfy/sd.py save_checkpoint, the model config's prefixes in
comfy/supported_models.py) writes the diffusion model under "model.diffusion_model.", each text encoder's
state dict under "text_encoders." with its wrapper's name ("qwen3_4b.transformer.", "t5xxl.transformer.",
"qwen25_7b.transformer."; the wrapped model's own names inside, as the standalone text encoder files hold
them), and the VAE under "vae." in the names its standalone file has (Flux's ae.safetensors, Wan 2.1's for
Qwen-Image). The repackaged "AIO" files people share (Z-Image Turbo AIO, Qwen-Image-Edit Rapid AIO, ...) are
these. write_all_in_one makes one from a family's part files (the writers in models.*_files), which is how the
tests show that the loader reads each part of it through the code the separate files use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.models.flow_load import COMFY_PREFIX
from sdcli.models.flux_files import COMFY_TEXT
from sdcli.models.flux_keys import COMFY_VAE

# Part role -> ComfyUI's name for that text encoder in a checkpoint (Flux.2 klein 9B's Qwen3 8B: "qwen3_8b").
COMFY_ENCODER_NAMES = {"qwen3": "qwen3_4b", "t5xxl": "t5xxl", "qwen25vl": "qwen25_7b", "clip_l": "clip_l"}


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def all_in_one_state(files: dict[str, Path], names: dict[str, str] | None = None) -> dict[str, Any]:
    """The tensors of one checkpoint holding the part files `files` (part -> .safetensors file: "transformer" in
    the original or ComfyUI's names, "vae", and text encoders by role, each under ComfyUI's name for it from
    `names` or COMFY_ENCODER_NAMES)."""
    names = {**COMFY_ENCODER_NAMES, **(names or {})}
    state: dict[str, Any] = {}
    for part, path in files.items():
        tensors = _tensors(path)
        if part == "transformer":
            prefix = "" if all(k.startswith(COMFY_PREFIX) for k in tensors) else COMFY_PREFIX
        elif part == "vae":
            prefix = COMFY_VAE
        else:
            prefix = f"{COMFY_TEXT}{names[part]}.transformer."
        state.update({prefix + key: value for key, value in tensors.items()})
    return state


def write_all_in_one(files: dict[str, Path], out: Path, names: dict[str, str] | None = None) -> Path:
    """Write all_in_one_state(files, names) to the new file `out` (atomically, as every writer here)."""
    from sdcli.models.flux_write import _save

    return _save(all_in_one_state(files, names), out)
