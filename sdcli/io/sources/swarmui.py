"""SwarmUI: `sui_image_params` JSON in the `parameters` chunk (or EXIF UserComment); written here, as sd-parsers
does not read it. SwarmUI runs ComfyUI, so its sampler names, noise and prompt weights are ComfyUI's."""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.comfyui import NOTES as COMFY_NOTES
from sdcli.io.sources.common import Found, clean, size, with_loras
from sdcli.io.sources.json_params import params_json
from sdcli.io.sources.names import comfy_sampler


def read(chunks: dict[str, Any]) -> Found | None:
    data = params_json(chunks)
    if data is None or not isinstance(data.get("sui_image_params"), dict):
        return None
    p = data["sui_image_params"]
    names, unmapped = comfy_sampler(p.get("sampler", "euler"), p.get("scheduler", "normal"))  # SwarmUI's defaults
    weights = p.get("loraweights") or []
    loras = [(str(name), float(weights[i]) if i < len(weights) else 1.0) for i, name in enumerate(p.get("loras") or [])]
    skip = p.get("clipstopatlayer")
    creativity = p.get("initimagecreativity")
    if creativity is not None:
        unmapped.append("its init image, which the metadata does not hold")
    parameters = clean({"Steps": p.get("steps"), **names, "CFG scale": p.get("cfgscale"), "Seed": p.get("seed"),
                        "Size": size(p.get("width"), p.get("height")), "Model": p.get("model"),
                        "VAE": p.get("vae") if p.get("vae") not in (None, "None", "Automatic") else None,
                        "Denoising strength": creativity, "Clip skip": -int(skip) if skip else None,
                        "Distilled CFG Scale": p.get("fluxguidancescale"), "Shift": p.get("sigmashift"),
                        "RNG": "Comfy", "Emphasis": "Comfy"})
    return Found("SwarmUI", with_loras(str(p.get("prompt", "")), loras), str(p.get("negativeprompt", "")),
                 parameters, {"parameters": data}, COMFY_NOTES, tuple(unmapped))
