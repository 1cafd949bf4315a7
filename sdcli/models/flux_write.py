"""Write Flux.1 weights in the file layouts people have, for `sdcli tiny --single-file` and the tests.

From a diffusers FluxTransformer2DModel / AutoencoderKL and transformers CLIPTextModel /
T5EncoderModel (or their state dicts): BFL transformer files (flux1-dev.safetensors), the same
under ComfyUI's "model.diffusion_model." prefix, diffusers transformer-only files, ComfyUI /
Comfy-Org all-in-one checkpoints, BFL's ae.safetensors, standalone clip_l / t5xxl files, and
GGUF transformers laid out as city96's Flux GGUFs are (BFL names, arch "flux", 1-D, small and
embedding/final-layer weights in F32, the other 2-D weights in the chosen type).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError
from sdcli.models.flux_keys import (
    COMFY_CLIP_L,
    COMFY_T5,
    COMFY_TRANSFORMER,
    COMFY_VAE,
    add_prefix,
    clip_state_for_saving,
    diffusers_to_bfl,
    t5_state_for_saving,
    vae_to_ldm,
)

TRANSFORMER_LAYOUTS = ("bfl", "comfy", "diffusers", "gguf")
LAYOUTS = (*TRANSFORMER_LAYOUTS, "all-in-one")
GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
# city96's convert.py keeps these weights (the input/output embeddings) in full precision.
GGUF_KEEP = ("time_in.", "txt_in.", "vector_in.", "img_in.", "guidance_in.", "final_layer.")
GGUF_SMALL = 1024  # tensors with at most this many values are not worth quantizing


def _state(component: Any) -> dict[str, Any]:
    """A module's state dict, or the dict itself."""
    return dict(component.state_dict()) if hasattr(component, "state_dict") else dict(component)


def _save(tensors: dict[str, Any], dest: Path, dtype: Any = None) -> Path:
    """A safetensors file written whole or not at all (temp file, then rename), floats cast to `dtype`."""
    from safetensors.torch import save_file

    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def transformer_state(transformer: Any, layout: str) -> dict[str, Any]:
    """A diffusers Flux transformer's weights under the keys of `layout` (bfl, comfy or diffusers)."""
    state = _state(transformer)
    if layout == "diffusers":
        return state
    bfl = diffusers_to_bfl(state)
    return add_prefix(bfl, COMFY_TRANSFORMER) if layout == "comfy" else bfl


def vae_state(vae: Any) -> dict[str, Any]:
    """A diffusers AutoencoderKL's weights in BFL's ae.safetensors (ldm) layout."""
    levels = len(vae.config.block_out_channels) if hasattr(vae, "config") else _levels(_state(vae))
    return vae_to_ldm(_state(vae), levels)


def _levels(state: dict[str, Any]) -> int:
    """The number of resolution levels of a diffusers VAE state dict."""
    return len({k.split(".")[2] for k in state if k.startswith("encoder.down_blocks.")})


def all_in_one_state(transformer: Any, vae: Any, clip_l: Any, t5: Any) -> dict[str, Any]:
    """Every Flux component under the keys of a ComfyUI all-in-one checkpoint."""
    out = transformer_state(transformer, "comfy")
    out.update(add_prefix(vae_state(vae), COMFY_VAE))
    out.update(add_prefix(clip_state_for_saving(_state(clip_l)), COMFY_CLIP_L))
    out.update(add_prefix(t5_state_for_saving(_state(t5)), COMFY_T5))
    return out


def gguf_tensor_type(key: str, shape: tuple[int, ...], qtype: str, keep: tuple[str, ...] = GGUF_KEEP) -> str:
    """The GGUF type city96's layout gives one tensor when the file's type is `qtype` (`keep`: the prefixes of
    the weights kept in full precision; Flux's by default)."""
    count = 1
    for n in shape:
        count *= n
    if len(shape) == 1 or count <= GGUF_SMALL or (key.endswith(".weight") and key.startswith(keep)):
        return "F32"
    return qtype


def write_gguf(state: dict[str, Any], dest: Path, qtype: str = "F16", arch: str = "flux",
               keep: tuple[str, ...] = GGUF_KEEP) -> Path:
    """A GGUF transformer file from original-layout weights (BFL's for Flux: arch "flux"), quantized with gguf's
    own quantizer; `keep`: the prefixes of the weights city96's tool keeps in full precision.

    A tensor whose rows do not divide into the type's blocks falls back to F32, as city96's tool does.
    """
    import gguf

    if qtype not in GGUF_TYPES:
        raise UsageError(f"GGUF type {qtype!r}: use one of {', '.join(GGUF_TYPES)}")
    file_type = gguf.LlamaFileType.ALL_F32 if qtype == "F32" else gguf.LlamaFileType[f"MOSTLY_{qtype}"]
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(int(file_type))
    for key, tensor in sorted(state.items()):
        data = tensor.float().numpy()
        kind = gguf.GGMLQuantizationType[gguf_tensor_type(key, tuple(data.shape), qtype, keep)]
        try:
            packed = gguf.quants.quantize(data, kind)
        except gguf.QuantError:
            kind = gguf.GGMLQuantizationType.F32
            packed = gguf.quants.quantize(data, kind)
        writer.add_tensor(key, packed, raw_dtype=kind)  # the writer stores the shape reversed (ne0 first)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_transformer(transformer: Any, dest: Path, layout: str, qtype: str = "F16", dtype: Any = None) -> Path:
    """One Flux transformer file in `layout` (bfl, comfy, diffusers; gguf with the GGUF type `qtype`)."""
    if layout not in TRANSFORMER_LAYOUTS:
        raise UsageError(f"Flux transformer layout {layout!r}: use one of {', '.join(TRANSFORMER_LAYOUTS)}")
    if layout == "gguf":
        return write_gguf(transformer_state(transformer, "bfl"), dest, qtype)
    return _save(transformer_state(transformer, layout), dest, dtype)


def write_flux_files(components: dict[str, Any], dest: Path, layout: str, qtype: str = "F16",
                     dtype: Any = None) -> dict[str, Path]:
    """The files of a Flux model in one layout, in the folder `dest`; returns component -> file.

    `components` maps "transformer", "vae", "text_encoder" (CLIP-L) and "text_encoder_2" (T5),
    as in a FluxPipeline, to models or state dicts. "all-in-one" writes one checkpoint; the other
    layouts write the transformer in that layout beside ae.safetensors, clip_l.safetensors and
    t5xxl.safetensors, as people download them. `dtype` casts the safetensors files (e.g. fp8).
    """
    if layout not in LAYOUTS:
        raise UsageError(f"Flux file layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    parts = (components["transformer"], components["vae"], components["text_encoder"], components["text_encoder_2"])
    if layout == "all-in-one":
        return {"all-in-one": _save(all_in_one_state(*parts), dest / "flux1-all-in-one.safetensors", dtype)}
    name = "flux1.gguf" if layout == "gguf" else f"flux1-{layout}.safetensors"
    return {
        "transformer": write_transformer(parts[0], dest / name, layout, qtype, dtype),
        "vae": _save(vae_state(parts[1]), dest / "ae.safetensors", dtype),
        "text_encoder": _save(clip_state_for_saving(_state(parts[2])), dest / "clip_l.safetensors", dtype),
        "text_encoder_2": _save(t5_state_for_saving(_state(parts[3])), dest / "t5xxl.safetensors", dtype),
    }
