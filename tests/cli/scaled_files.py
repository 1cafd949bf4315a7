"""ComfyUI's scaled fp8 formats written from a tiny model's files, for tests/cli/test_scaled_fp8_cli.py.

scale_file turns a float file into three: the scaled file in one of ComfyUI's layouts (the older `scaled_fp8`
marker with `<layer>.scale_weight`, the newer `<layer>.weight_scale` with a `comfy_quant` JSON tensor per layer or
the layers' formats in the `_quantization_metadata` metadata), the same weights dequantized by hand (float32
`stored * scale`, what the loader must give), and the fp8 values with their scales left out (a loader that ignored
the scales would read this). Scales are 0.5, 0.75 and 1.125 in turn: none is 1, all keep the tiny weights inside
fp8's range.
"""

from __future__ import annotations

import json
from pathlib import Path

SCALES = (0.5, 0.75, 1.125)
FORMATS = ("old", "comfy_quant", "metadata")
COMFY_PREFIX = "model.diffusion_model."


def _conf(fmt: str):
    import torch

    return torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def scale_state(state: dict, layout: str, fp8: str = "float8_e4m3fn",
                under: tuple[str, ...] = ("",)) -> tuple[dict, dict, dict, dict[str, str]]:
    """(scaled tensors, by hand, scales ignored, metadata) of `state`: every 2-D `.weight` whose key starts with
    one of `under` is stored in `fp8` with a scale, in ComfyUI's `layout` (FORMATS)."""
    import torch

    dtype = getattr(torch, fp8)
    scaled, hand, ignored, layers = {}, {}, {}, {}
    names = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2 and k.startswith(under)]
    for key, value in state.items():
        scaled[key] = hand[key] = ignored[key] = value
    for i, key in enumerate(sorted(names)):
        scale = torch.tensor(SCALES[i % len(SCALES)], dtype=torch.float32)
        stored = (state[key].float() / scale).to(dtype)
        layer = key.removesuffix(".weight")
        scaled[key] = ignored[key] = stored
        hand[key] = stored.float() * scale
        if layout == "old":
            scaled[layer + ".scale_weight"] = scale
            if i % 2:
                scaled[layer + ".scale_input"] = torch.tensor(1.0)
        else:
            scaled[layer + ".weight_scale"] = scale
            scaled[layer + ".input_scale"] = torch.tensor(0.25 + i % 2)
            if layout == "comfy_quant":
                scaled[layer + ".comfy_quant"] = _conf(fp8)
            else:
                layers[layer] = {"format": fp8}
    if layout == "old":
        prefix = COMFY_PREFIX if any(k.startswith(COMFY_PREFIX) for k in names) else ""
        scaled[prefix + "scaled_fp8"] = torch.empty(0, dtype=dtype)
    metadata = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})} if layers else {}
    return scaled, hand, ignored, metadata


def scale_file(src: Path, out: Path, layout: str, fp8: str = "float8_e4m3fn",
               under: tuple[str, ...] = ("",)) -> dict[str, Path]:
    """{"scaled", "by-hand", "ignored"} -> a file of that name as `src`'s, in out/<that word>/ (scale_state)."""
    from safetensors.torch import load_file, save_file

    states = scale_state(load_file(str(src)), layout, fp8, under)
    files = {}
    for word, state in zip(("scaled", "by-hand", "ignored"), states[:3], strict=True):
        path = out / word / src.name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(path),
                  metadata=states[3] if word == "scaled" else None)
        files[word] = path
    return files
