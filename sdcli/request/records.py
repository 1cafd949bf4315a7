"""Requests as records store them (replay records in images, batch digests and manifests): to and from plain
dicts, with the settings added after records were first written left out while unset. No torch here."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from sdcli.controlnet.units import ControlUnit, unit_from_dict
from sdcli.request.generation import PARTS, GenerationRequest

# Fields a record names only when they are not at their default: settings added after records were first
# written, so that a record (and the bytes of an image carrying it, a batch's digest) is what it was before.
RECORDED_WHEN_SET: dict[str, Any] = {"tiling": False, "distilled_cfg_scale": None, "shift": None, "text_encoders": (),
                                     "low_bits": None, "references": (), "quantize_text_encoder": False,
                                     "hires.distilled_cfg_scale": None, "restore_faces": None,
                                     "code_former_weight": 0.5, "model_sampling": None,
                                     "zero_negative": False, "upsample_prompt": None,
                                     "cfg_norm": None, "comfy_edit": False,
                                     "reference_scale": None}


def request_to_dict(request: GenerationRequest) -> dict[str, Any]:
    """The request as records store it (replay records, batch digests): dataclasses.asdict less the
    RECORDED_WHEN_SET fields at their default."""
    return _unset_left_out(asdict(request), "")


def _unset_left_out(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`data` less its RECORDED_WHEN_SET fields (`part.field` inside a part) at their default."""
    return {k: _unset_left_out(v, f"{k}.") if isinstance(v, dict) and k in PARTS else v for k, v in data.items()
            if prefix + k not in RECORDED_WHEN_SET or v != RECORDED_WHEN_SET[prefix + k]}


def request_from_dict(data: dict[str, Any]) -> GenerationRequest:
    """The inverse of request_to_dict (and of dataclasses.asdict), ignoring unknown keys (records from other
    versions); missing keys take their defaults."""
    known = {f.name for f in fields(GenerationRequest)}
    values = {k: v for k, v in data.items() if k in known}
    for name, cls in PARTS.items():
        if isinstance(values.get(name), dict):
            part_fields = {f.name for f in fields(cls)}
            values[name] = cls(**{k: v for k, v in values[name].items() if k in part_fields})
    if "text_encoders" in values:
        values["text_encoders"] = tuple(values["text_encoders"] or ())
    if "controlnets" in values:
        values["controlnets"] = tuple(u if isinstance(u, ControlUnit) else unit_from_dict(u)
                                      for u in values["controlnets"] or ())
    for name in ("text_encoders", "references"):  # JSON gives a list; the plan keys its memo by the (hashable) tuple
        if name in values:
            values[name] = tuple(str(t) for t in values[name] or ())
    return GenerationRequest(**values)
