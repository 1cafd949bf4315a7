"""WebUI-style single-file checkpoints (.safetensors, original ldm/sgm key layout), loaded offline.

The family comes from the tensor names and shapes in the file's header
(sdcli.families); the diffusers config folder that loading needs is written from
configs bundled with sdcli (models.bundled) into sdcli's cache, and diffusers'
from_single_file converts the weights with `config=` that folder and
local_files_only: no hub is ever asked. Tiny checkpoints (`sdcli tiny --single-file`)
load the same way from the tiny configs of models.tiny.
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families import detect_single_file, pipeline_class
from sdcli.families.base import UNET_CONV_IN, Detected, Shapes

# SAI model-spec metadata key some trainers (and sdcli tiny) write: "epsilon" or "v".
PREDICTION_METADATA = "modelspec.prediction_type"


def read_header(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor shapes and the __metadata__ of a safetensors file, from its JSON header only."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    metadata = header.pop("__metadata__", None) or {}
    return {name: list(info["shape"]) for name, info in header.items()}, metadata


def inspect(path: Path, source: str = "--model") -> Detected:
    """Family, inpainting and prediction type of a single-file checkpoint (header only)."""
    shapes, metadata = read_header(path)
    detected = detect_single_file(shapes, f"{source}: {path}")
    declared = {"epsilon": "eps", "eps": "eps", "v": "v", "v_prediction": "v"}.get(
        str(metadata.get(PREDICTION_METADATA, "")).lower())
    if declared:
        detected = replace(detected, prediction=declared, prediction_guessed=False)
    return detected


def config_spec(shapes: Shapes, detected: Detected, source: str) -> tuple[dict[str, Any], str]:
    """The configs (bundled family layout) that fit this file, and which tokenizer to write.

    Full-size families use the bundled configs; a UNet of another width must be one of
    sdcli's tiny architectures. The variant (inpainting, eps/v) is set from `detected`.
    """
    from sdcli.models.bundled import family_config
    from sdcli.models.tiny import ARCHES

    width = int(shapes[UNET_CONV_IN][0])
    spec, tokenizer = family_config(detected.family.configs), "clip"
    if spec["unet"]["block_out_channels"][0] != width:
        tiny = [a for a in ARCHES.values() if a.family == detected.family.name
                and a.unet["block_out_channels"][0] == width]
        if not tiny:
            raise ModelError(f"{source}: a {detected.family.label} UNet {width} channels wide is not a variant "
                             f"sdcli knows (expected {spec['unet']['block_out_channels'][0]})")
        spec, tokenizer = tiny[0].spec(), "tiny"
    spec["unet"]["in_channels"] = detected.in_channels
    spec["scheduler"]["prediction_type"] = "v_prediction" if detected.prediction == "v" else "epsilon"
    if tokenizer == "clip" and detected.family.name == "sd2":
        spec["unet"]["sample_size"] = detected.native_size // 8
    return spec, tokenizer


def load_single_file(path: Path, dtype: Any, source: str = "--model") -> Any:
    """The txt2img (refiner: img2img) pipeline of a single-file checkpoint; never touches the network."""
    import diffusers

    from sdcli.models.bundled import cached_config_folder
    from sdcli.models.hashes import cache_dir

    shapes, _ = read_header(path)
    detected = inspect(path, source)
    spec, tokenizer = config_spec(shapes, detected, f"{source}: {path}")
    folder = cached_config_folder(spec, cache_dir() / "configs", tokenizer)
    mode = "txt2img" if "txt2img" in detected.family.pipelines else "img2img"
    cls = getattr(diffusers, pipeline_class(detected, mode, source))
    extra = {} if detected.family.is_xl else {"safety_checker": None, "requires_safety_checker": False}
    try:
        pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=dtype,
                                    **extra)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"{source}: cannot load {path} as {detected.family.label}: "
                         f"{str(exc).splitlines()[0]}") from None
    pipe.sdcli_detected = detected
    return pipe


def settle_prediction(pipe: Any) -> None:
    """SD 2.x without a declared prediction type: decide eps or v as the WebUI does, by running the UNet.

    The WebUI's rule (sd_models_config.is_using_v_parameterization_for_sd2): latents and
    context all 0.5, timestep 999; a v model's output minus the input has a mean below -1.
    Run once on the loaded UNet (8x8 latents: well under a second on a GPU); the scheduler's
    prediction type and the native size follow. Inpainting files keep the eps guess, as there.
    """
    import torch

    detected = getattr(pipe, "sdcli_detected", None)
    if detected is None or detected.family.name != "sd2" or not detected.prediction_guessed or detected.inpainting:
        return
    param = next(pipe.unet.parameters())
    x = torch.full((1, 4, 8, 8), 0.5, device=param.device, dtype=param.dtype)
    context = torch.full((1, 2, pipe.unet.config.cross_attention_dim), 0.5, device=param.device, dtype=param.dtype)
    with torch.no_grad():
        out = pipe.unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
    prediction = "v" if (out - x).float().mean().item() < -1 else "eps"
    settled = replace(detected, prediction=prediction, prediction_guessed=False)
    pipe.scheduler = type(pipe.scheduler).from_config(
        pipe.scheduler.config, prediction_type="v_prediction" if prediction == "v" else "epsilon")
    if pipe.unet.config.sample_size * 8 == detected.native_size:  # bundled size followed the guess
        pipe.unet.register_to_config(sample_size=settled.native_size // 8)
    pipe.sdcli_detected = settled


def convert_pickle(path: Path) -> Path:
    """A pickle checkpoint (--allow-pickle) as a safetensors copy in sdcli's cache, made once.

    The weights are read by safety.load_state_dict (torch.load weights_only=True, never an
    unsafe retry); the copy is named by the file's SHA-256, so an unchanged file converts once
    and everything after it loads through the ordinary single-file path.
    """
    import os

    from safetensors.torch import save_file

    from sdcli.models.hashes import cache_dir, file_sha256
    from sdcli.models.safety import load_state_dict

    target = cache_dir() / "converted" / f"{file_sha256(path)[:32]}.safetensors"
    if target.is_file():
        return target
    weights = load_state_dict(path, flag="--model", allow_pickle=True)
    tensors = {k: v.contiguous() for k, v in weights.items() if hasattr(v, "contiguous")}
    if not tensors:
        raise ModelError(f"--model: {path} holds no tensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
