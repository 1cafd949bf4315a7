"""Rebuild a generation request from an image's metadata (for `sdcli replay` and `sdcli info`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sdcli.core.metadata import parse_infotext, read_infotext, read_replay_record
from sdcli.core.request import GenerationRequest, request_from_dict
from sdcli.errors import UsageError

# WebUI infotext key -> (request field, converter). One row a key.
INFOTEXT_FIELDS: dict[str, tuple[str, Any]] = {
    "Steps": ("steps", int),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Sampler": ("sampler", str),
    "Schedule type": ("schedule", str.lower),
    "Clip skip": ("clip_skip", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "RNG": ("rng", str.lower),
    "Emphasis": ("emphasis", str.lower),
    "Eta": ("eta", float),
    "Eta DDIM": ("eta", float),
    "ENSD": ("ensd", int),
    "Sigma churn": ("s_churn", float),
    "Sigma tmin": ("s_tmin", float),
    "Sigma tmax": ("s_tmax", float),
    "Sigma noise": ("s_noise", float),
    "Schedule min sigma": ("sigma_min", float),
    "Schedule max sigma": ("sigma_max", float),
}
# An infotext without an RNG key was made with the WebUI's default source, GPU: on NVIDIA
# cards (nearly every WebUI install) that is the noise sdcli's "nv" source reproduces.
WEBUI_DEFAULT_RNG = "nv"


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    """What an image says about how it was made."""

    path: Path
    prompt: str
    negative_prompt: str
    parameters: dict[str, str]
    infotext: str
    replay: dict[str, Any] | None  # sdcli's own record, when sdcli wrote the image

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "parameters": self.parameters, "sdcli": self.replay, "infotext": self.infotext}


class NoMetadata(UsageError):
    """The image carries no generation parameters."""


def read_metadata(path: Path) -> ImageMetadata:
    """Read an image's parameters; UsageError naming the file when it cannot."""
    from PIL import UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        infotext = read_infotext(path)
        replay = read_replay_record(path)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UsageError(f"{path}: not a readable image ({exc})") from None
    if not infotext:
        raise NoMetadata(f"{path}: no generation parameters found")
    prompt, negative, params = parse_infotext(infotext)
    return ImageMetadata(path, prompt, negative, params, infotext, replay)


def request_from_infotext(meta: ImageMetadata) -> GenerationRequest:
    """A request from WebUI parameters (any tool that writes them)."""
    fields: dict[str, Any] = {"prompt": meta.prompt, "negative_prompt": meta.negative_prompt,
                              "rng": WEBUI_DEFAULT_RNG}
    for key, (field, convert) in INFOTEXT_FIELDS.items():
        if key in meta.parameters:
            try:
                fields[field] = convert(meta.parameters[key])
            except ValueError:
                raise UsageError(f"{meta.path}: bad {key!r} value {meta.parameters[key]!r}") from None
    if size := meta.parameters.get("Size"):
        try:
            fields["width"], fields["height"] = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise UsageError(f"{meta.path}: bad 'Size' value {size!r}") from None
    return GenerationRequest(**fields)


def request_from_image(path: Path) -> tuple[GenerationRequest, str | None, bool]:
    """(request, model source, made by sdcli) for one image.

    sdcli's own record is exact (every field, the model path); other tools'
    images fall back to the WebUI infotext and need --model.
    """
    meta = read_metadata(path)
    if meta.replay and isinstance(meta.replay.get("request"), dict):
        return request_from_dict(meta.replay["request"]), meta.replay.get("model"), True
    return request_from_infotext(meta), None, False


def replay_model(path: Path, source: str | None, made_by_sdcli: bool, override: str | None) -> str | None:
    """The --model to use: the override, else the image's own; named clearly when missing."""
    if override:
        return override
    if not made_by_sdcli:
        raise UsageError(f"{path}: not made by sdcli, so its metadata has no model path; pass --model")
    if source and source.startswith("/") and not Path(source).exists():
        raise UsageError(f"{path}: its model {source} was not found; pass --model")
    return source
