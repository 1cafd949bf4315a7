"""Fooocus: its `parameters` JSON (PNG chunk, or EXIF UserComment in a JPEG), read by sd-parsers; written here:
its ComfyUI-named sampler/scheduler mapped (names.comfy_sampler), resolution, LoRAs and what does not replay."""

from __future__ import annotations

import re
from typing import Any

from sdcli.io.sources.common import Found, clean, first_sampler, via_sd_parsers, with_loras
from sdcli.io.sources.json_params import params_json
from sdcli.io.sources.names import comfy_sampler

NOTES = ("Fooocus expands the prompt (its GPT-2 expansion and styles: full_prompt) and adds sharpness and ADM "
         "guidance; sdcli runs the prompt as written, without them",)


def read(chunks: dict[str, Any]) -> Found | None:
    data = params_json(chunks)
    if data is None or not (str(data.get("version", "")).startswith("Fooocus") or "fooocus_scheme" in chunks):
        return None
    text = chunks.get("parameters", chunks.get("UserComment"))
    info = via_sd_parsers("FooocusParser", {"parameters": text}, "Fooocus parameters")
    name, params, model = first_sampler(info)
    names, unmapped = comfy_sampler(name, params.get("scheduler"))
    width_height = re.findall(r"\d+", str(data.get("resolution", "")))
    loras = [(str(entry[0]), float(entry[1])) for entry in data.get("loras") or []
             if isinstance(entry, list | tuple) and len(entry) >= 2 and str(entry[0]) != "None"]
    refiner = data.get("refiner_model")
    if refiner not in (None, "None", ""):
        unmapped.append(f"its refiner {refiner!r}")
    parameters = clean({"Steps": params.get("steps"), **names, "CFG scale": params.get("cfg_scale"),
                        "Seed": params.get("seed"),
                        "Size": "x".join(width_height) if len(width_height) == 2 else None,
                        "Model": model.rsplit(".", 1)[0] if model else None,
                        "Clip skip": data.get("clip_skip") if data.get("clip_skip") not in (None, 1) else None,
                        "RNG": "Comfy"})
    return Found("Fooocus", with_loras(str(data.get("prompt", "")), loras), str(data.get("negative_prompt", "")),
                 parameters, {"parameters": data}, NOTES, tuple(unmapped))
