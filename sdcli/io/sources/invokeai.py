"""InvokeAI: its three formats (`invokeai_metadata` JSON, legacy `sd-metadata` JSON, legacy `Dream` command line).

sd-parsers reads all three; written here: the newer `model.name` (sd-parsers reads only `model_name`), the
LoRAs, the size, and the scheduler names mapped to the WebUI's (names.INVOKEAI_SAMPLERS).
"""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.common import Found, clean, first_sampler, load_json, size, via_sd_parsers, with_loras
from sdcli.io.sources.names import INVOKEAI_SAMPLERS

KEYS = ("invokeai_metadata", "sd-metadata", "Dream")
NOTES = ("InvokeAI runs diffusers' schedulers, sdcli the WebUI's k-diffusion samplers: same method and start "
         "noise (InvokeAI draws it on the CPU, as --rng cpu), small differences in the steps",)


def read(chunks: dict[str, Any]) -> Found | None:
    key = next((k for k in KEYS if k in chunks), None)
    if key is None:
        return None
    raw = load_json(chunks[key], f"InvokeAI {key} chunk") if key != "Dream" else {}
    info = via_sd_parsers("InvokeAIParser", {key: chunks[key]}, f"InvokeAI {key} chunk")
    name, params, model = first_sampler(info)
    meta = {**(raw.get("image") or {} if isinstance(raw, dict) else {}), **(raw if isinstance(raw, dict) else {}),
            **info.metadata}
    sampler, schedule = INVOKEAI_SAMPLERS.get(name, (name, None))
    if model is None and isinstance(meta.get("model"), dict):
        model = meta["model"].get("name") or meta["model"].get("model_name")
    loras = [(lora, float(entry.get("weight", 1.0))) for entry in meta.get("loras") or []
             if isinstance(entry, dict) and (lora := _lora_name(entry))]
    parameters = clean({"Steps": params.get("steps"), "Sampler": sampler, "Schedule type": schedule,
                        "CFG scale": params.get("cfg_scale"), "Seed": params.get("seed"),
                        "Size": size(meta.get("width"), meta.get("height")), "Model": model,
                        "Denoising strength": meta.get("strength") if meta.get("type") == "img2img" or
                        meta.get("generation_mode", "").endswith("img2img") else None,
                        "Clip skip": meta["clip_skip"] + 1 if meta.get("clip_skip") else None,  # layers skipped
                        "RNG": "CPU"})
    unmapped = () if name in INVOKEAI_SAMPLERS else (f"scheduler {name!r}",)
    return Found("InvokeAI", with_loras(info.full_prompt, loras), info.full_negative_prompt, parameters,
                 {key: raw if key != "Dream" else chunks[key]}, NOTES, unmapped)


def _lora_name(entry: dict[str, Any]) -> str | None:
    """A LoRA entry's model name (InvokeAI 3: lora.model_name; 4+: lora.name)."""
    lora = entry.get("lora") or entry.get("model") or {}
    return (lora.get("name") or lora.get("model_name")) if isinstance(lora, dict) else None
