"""WebUI-style single-file checkpoints (.safetensors, original ldm/sgm key layout), loaded offline.

The family comes from the tensor names and shapes in the file's header
(sdcli.families); the diffusers config folder that loading needs is written from
configs bundled with sdcli (models.bundled) into sdcli's cache, and diffusers'
from_single_file converts the weights with `config=` that folder and
local_files_only: no hub is ever asked. Tiny checkpoints (`sdcli tiny --single-file`)
load the same way from the tiny configs of models.tiny.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError
from sdcli.families import detect_single_file, pipeline_class
from sdcli.families.base import UNET_CONV_IN, Detected, Shapes
from sdcli.models.header import read_header
from sdcli.models.scaled_fp8 import is_scaled

# SAI model-spec metadata key some trainers (and sdcli tiny) write: "epsilon" or "v".
PREDICTION_METADATA = "modelspec.prediction_type"


def inspect(path: Path, source: str = "--model") -> Detected:
    """Family, inpainting and prediction type of a single-file checkpoint (header only)."""
    if path.suffix.lower() == ".gguf":  # a GGUF transformer (city96's Flux files): its tensor table
        from sdcli.models.flux_files import read_tensor_table

        try:
            shapes, metadata = read_tensor_table(path)[0], {}
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"{source}: {path} is not a readable GGUF file ({exc})") from None
    else:
        shapes, metadata = read_header(path)
    detected = detect_single_file(shapes, f"{source}: {path}", path.name)
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

    if (own := detected.family.single_file_config(shapes, source)) is not None:
        return own
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
    if tokenizer == "clip":  # the bundled size is the family's; SD 2.x: 512 (eps) or 768 (v)
        spec["unet"]["sample_size"] = detected.native_size // 8
    return spec, tokenizer


def load_single_file(path: Path, dtype: Any, source: str = "--model") -> tuple[Any, Detected]:
    """The txt2img (refiner: img2img) pipeline of a single-file checkpoint and what its header says; never
    touches the network."""
    import diffusers

    from sdcli.models.bundled import cached_config_folder
    from sdcli.models.hashes import cache_dir
    from sdcli.models.startup import end as end_start_pause
    from sdcli.models.tokenizer_files import user_tokenizers

    shapes, metadata = read_header(path)
    detected = inspect(path, source)
    spec, tokenizer = config_spec(shapes, detected, f"{source}: {path}")
    user = user_tokenizers(spec, path.parent) if tokenizer != "tiny" else {}  # the user's T5 tokenizer, if any
    folder = cached_config_folder(spec, cache_dir() / "configs", tokenizer, user)
    mode = next(m for m in ("txt2img", "img2img", "inpaint") if m in detected.family.pipelines)
    cls = getattr(diffusers, pipeline_class(detected, mode, source))
    end_start_pause()  # the libraries are in, no weights loaded yet (models.startup)
    try:
        if is_scaled(list(shapes), metadata):  # ComfyUI's scaled fp8 checkpoints (sd3.5_large_fp8_scaled)
            pipe = _load_dequantized(cls, path, folder, dtype, source, detected.family.load_kwargs)
        else:
            pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=dtype,
                                        **detected.family.load_kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"{source}: cannot load {path} as {detected.family.label}: "
                         f"{str(exc).splitlines()[0]}") from None
    for part in pipe.components.values():  # diffusers leaves a single file's T5 (SD3) in training mode: dropout
        if hasattr(part, "eval") and getattr(part, "training", False):
            part.eval()
    return pipe, detected


def _load_dequantized(cls: Any, path: Path, folder: Path, dtype: Any, source: str, load_kwargs: Any) -> Any:
    """The pipeline `cls` of a checkpoint holding ComfyUI's fp8 scales: its tensors read with each scaled weight
    multiplied out (models.scaled_fp8), each weighted component converted from them by diffusers' own single-file
    component loader (what from_single_file runs, which takes only a path), tokenizers and scheduler from `folder`."""
    import importlib
    import json

    import diffusers
    import torch
    from diffusers.loaders.single_file import load_single_file_sub_model

    from sdcli.models.flux_load import read_tensors, upcast

    checkpoint = upcast(read_tensors(path, "", source, dtype), dtype)
    components = {}
    for name, entry in json.loads((folder / "model_index.json").read_text()).items():
        if name.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        library, class_name = entry
        if issubclass(getattr(importlib.import_module(library), class_name), torch.nn.Module):
            components[name] = load_single_file_sub_model(
                library_name=library, class_name=class_name, name=name, checkpoint=checkpoint,
                pipelines=diffusers.pipelines, is_pipeline_module=False, cached_model_config_path=str(folder),
                local_files_only=True, torch_dtype=dtype)
    return cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype, **components, **load_kwargs)


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
