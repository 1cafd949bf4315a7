"""ComfyUI's scaled fp8 files (`*_fp8_scaled`, `*_fp8_mixed`, `*_fp8_e4m3fn_scaled`), dequantized as they are read.

ComfyUI's repackaged fp8 files store a layer's weight in float8 with one float32 scale, the weight being
`stored * scale`. Two layouts circulate (comfy/utils.py convert_old_quants turns the first into the second):

- the older one: a `scaled_fp8` marker tensor (its dtype the fp8 kind) and `<layer>.scale_weight` beside each
  scaled `<layer>.weight`, maybe `<layer>.scale_input` (an activation scale);
- the newer "mixed precision" one: `<layer>.weight_scale` (and maybe `.input_scale`) with the layer's format as
  a `<layer>.comfy_quant` uint8 tensor holding JSON ({"format": "float8_e4m3fn"}), or all layers' formats in the
  file's `_quantization_metadata` JSON ({"layers": {layer: {"format": ...}}}). Formats other than per-tensor fp8
  (nvfp4, mxfp8, int8, ...) keep other scales and are refused by name.

sdcli multiplies each scaled weight out in float32 and casts it to the job's dtype at load (the simplest correct
route: the model then runs as an unquantized one does), and drops the marker and the scale tensors, so the
converters and strict key checks downstream see the model's own names only. Activation scales are not needed
for a dequantized weight.
"""

from __future__ import annotations

import json
from typing import Any

from sdcli.errors import ModelError

MARKER = "scaled_fp8"
QUANT_METADATA = "_quantization_metadata"
# per-tensor fp8 formats sdcli dequantizes (comfy/quant_ops.py QUANT_ALGOS' float8 rows)
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
OLD_SIDE = (".scale_weight", ".scale_input")  # beside <layer>.weight in a file with the marker
NEW_SIDE = (".weight_scale", ".input_scale", ".comfy_quant")  # beside <layer>.weight of a layer with a format
# every tensor name that describes a quantized layer rather than holds a weight of the model (for listings)
SIDE_SUFFIXES = (*OLD_SIDE, *NEW_SIDE, ".weight_scale_2", ".pre_quant_scale")


def is_marker(key: str) -> bool:
    """Whether `key` is the older layout's marker tensor (under any prefix)."""
    return key == MARKER or key.endswith("." + MARKER)


def is_side_tensor(key: str) -> bool:
    """Whether `key` is a quantization marker or scale rather than a weight of the model."""
    return is_marker(key) or key.endswith(SIDE_SUFFIXES)


def is_scaled(keys: list[str], metadata: dict[str, str]) -> bool:
    """Whether a file with these tensor names and metadata is in one of ComfyUI's scaled layouts: the marker
    anywhere in it, a comfy_quant tensor, or the _quantization_metadata. (Scales without them stay unexplained
    tensors, which the strict key checks refuse by name, as ComfyUI leaves them unused.)"""
    return QUANT_METADATA in metadata or any(is_marker(k) or k.endswith(".comfy_quant") for k in keys)


def _layer_formats(keys: list[str], metadata: dict[str, str], read: Any, where: str) -> dict[str, str]:
    """{layer: format} from the file's _quantization_metadata and its layers' comfy_quant tensors."""
    formats: dict[str, str] = {}
    if QUANT_METADATA in metadata:
        try:
            layers = json.loads(metadata[QUANT_METADATA]).get("layers", {})
            formats = {str(k): str(v.get("format") if isinstance(v, dict) else v) for k, v in layers.items()}
        except (ValueError, AttributeError) as exc:
            raise ModelError(f"{where}: its {QUANT_METADATA} metadata is not ComfyUI's JSON ({exc})") from None
    for key in keys:
        if key.endswith(".comfy_quant"):
            try:
                conf = json.loads(bytes(read(key).flatten().tolist()).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ModelError(f"{where}: {key} is not ComfyUI's quantization JSON ({exc})") from None
            formats[key.removesuffix(".comfy_quant")] = str(conf.get("format") if isinstance(conf, dict) else conf)
    return formats


def _format_of(layer: str, formats: dict[str, str]) -> str | None:
    """The format of `layer`: its own entry, else the entry of its name without leading prefixes (some files name
    the layers in their metadata without the "model.diffusion_model." their tensors carry)."""
    parts = layer.split(".")
    return next((formats[name] for i in range(len(parts)) if (name := ".".join(parts[i:])) in formats), None)


def _scales(keys: list[str], formats: dict[str, str], marked: bool, where: str) -> tuple[dict[str, str], set[str]]:
    """({weight key: its scale's key}, the side tensors to drop) of the layers among `keys`; a layer in a format
    other than per-tensor fp8, or in fp8 without its scale, is refused naming the file, the layer and the format."""
    names = set(keys)
    scales: dict[str, str] = {}
    drop = {k for k in keys if is_marker(k) or k.endswith(".comfy_quant")}
    if marked:  # the older layout: every scale_weight is its layer's (convert_old_quants: float8_e4m3fn)
        for key in keys:
            if key.endswith(".scale_weight") and key.removesuffix(".scale_weight") + ".weight" in names:
                scales[key.removesuffix(".scale_weight") + ".weight"] = key
        drop |= {k for k in keys if k.endswith(OLD_SIDE)}
    for key in keys:
        layer = key.removesuffix(".weight")
        if not formats or not key.endswith(".weight") or (fmt := _format_of(layer, formats)) is None:
            continue
        if fmt not in FP8_FORMATS:
            raise ModelError(f"{where}: {layer} is stored as {fmt!r}, a ComfyUI quantization sdcli cannot read "
                             f"(it reads {' and '.join(FP8_FORMATS)} with a scale per tensor)")
        if layer + ".weight_scale" not in names:
            raise ModelError(f"{where}: {key} is marked {fmt} but has no weight_scale")
        scales[key] = layer + ".weight_scale"
        drop |= {layer + s for s in NEW_SIDE} & names
    return scales, drop


def _dequantize(weight: Any, scale: Any, dtype: Any, key: str, where: str) -> Any:
    """`weight * scale` computed in float32 and cast to `dtype`; a scale per tensor or per output row."""
    import torch

    scale = scale.to(torch.float32)
    if scale.numel() == 1:
        scale = scale.reshape(())
    elif scale.numel() == weight.shape[0]:
        scale = scale.reshape(weight.shape[0], *([1] * (weight.ndim - 1)))
    else:
        raise ModelError(f"{where}: the scale of {key} has shape {list(scale.shape)}, which fits neither the "
                         f"whole weight nor its rows ({list(weight.shape)})")
    return (weight.to(torch.float32) * scale).to(dtype)


def read_scaled(fh: Any, keys: list[str], dtype: Any, where: str) -> dict[str, Any]:
    """The tensors `keys` of an open safetensors file (safe_open handle `fh`) in one of ComfyUI's scaled layouts,
    each scaled weight multiplied out into `dtype` and the markers and scales of its layers dropped (anything in
    a format sdcli cannot map is refused in one line naming the file, the layer and the format)."""
    marked = any(is_marker(k) for k in fh.keys())  # noqa: SIM118 (an all-in-one file's marker may sit elsewhere)
    formats = _layer_formats(keys, fh.metadata() or {}, fh.get_tensor, where)
    scales, drop = _scales(keys, formats, marked, where)
    out: dict[str, Any] = {}
    for key in keys:
        if key in drop:
            continue
        tensor = fh.get_tensor(key)
        out[key] = _dequantize(tensor, fh.get_tensor(scales[key]), dtype, key, where) if key in scales else tensor
    return out
