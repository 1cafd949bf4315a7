"""NovelAI: its `Comment` JSON with `Description` (the prompt) and `Source` (the model), read by sd-parsers;
written here: its sampler and noise schedule mapped to the WebUI's (names.NOVELAI_*) and the size."""

from __future__ import annotations

from typing import Any

from sdcli.io.sources.common import Found, clean, first_sampler, load_json, size, via_sd_parsers
from sdcli.io.sources.names import NOVELAI_SAMPLERS, NOVELAI_SCHEDULES

NOTES = ("NovelAI's models are its own (not published): replay needs --model, and its SMEA, CFG rescale and "
         "noise (drawn on its GPUs) are not reproduced",)


def read(chunks: dict[str, Any]) -> Found | None:
    if "Comment" not in chunks or ("Software" not in chunks and "NovelAI" not in str(chunks.get("Source", ""))):
        return None
    raw = load_json(chunks["Comment"], "NovelAI Comment chunk")
    if not isinstance(raw, dict):
        return None
    filled = {"Description": raw.get("prompt", ""), "Source": "", **chunks}
    info = via_sd_parsers("NovelAIParser", filled, "NovelAI Comment chunk")
    name, params, _ = first_sampler(info)
    schedule = raw.get("noise_schedule", "native")
    parameters = clean({"Steps": raw.get("steps"), "Sampler": NOVELAI_SAMPLERS.get(name, name),
                        "Schedule type": NOVELAI_SCHEDULES.get(schedule, schedule),
                        "CFG scale": params.get("cfg_scale"), "Seed": params.get("seed"),
                        "Size": size(raw.get("width"), raw.get("height")),
                        "Model": chunks.get("Source") or None})
    unmapped = [f"sampler {name!r}"] if name not in NOVELAI_SAMPLERS else []
    if schedule not in NOVELAI_SCHEDULES:
        unmapped.append(f"noise schedule {schedule!r}")
    return Found("NovelAI", info.full_prompt, info.full_negative_prompt, parameters, {"Comment": raw}, NOTES,
                 tuple(unmapped))
