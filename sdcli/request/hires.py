"""Hires fix: the WebUI's second pass of txt2img, run on sdcli's own loop.

What it holds: the settings (HiresSettings, the `hires` part of a GenerationRequest) and
their checks; the target size (the WebUI's calculate_target_resolution: `Hires upscale` x
the first-pass size, or `Hires resize` WxH fitted to the first pass's aspect and cropped in
latent space); the infotext keys, read back for replay. The checks that need the whole request
(validate_hires, hires_choices) are request.generation's; the pass itself is sdcli.execution.hires.

No torch here (request.generation imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError

LATENT_FACTOR = 8  # the WebUI's opt_f: pixels per latent cell, before a model (and its latent format) is known
MAX_SIDE = 8192


@dataclass(frozen=True)
class HiresSettings:
    """Hires fix settings (flag -> field): --hires-scale, --hires-size (width x height; 0 on one side
    keeps the aspect), --hires-steps (0 = the first pass's), --hires-denoise, --hires-upscaler,
    and None = the first pass's value for prompt, negative prompt, sampler, schedule, CFG scale and (Forge's,
    for guidance-distilled models) distilled CFG scale."""

    scale: float = 2.0
    width: int = 0
    height: int = 0
    steps: int = 0
    denoise: float = 0.7
    upscaler: str = "Latent"
    prompt: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    schedule: str | None = None
    cfg_scale: float | None = None
    distilled_cfg_scale: float | None = None

    @property
    def resize(self) -> bool:
        return bool(self.width or self.height)


def parse_size(flag: str, text: str) -> tuple[int, int]:
    """'WxH' (either side may be 0: from the aspect) -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"{flag}: {text!r} is not WIDTHxHEIGHT (e.g. 1024x1536; 0 on one side keeps the aspect)")
    return int(match.group(1)), int(match.group(2))






def check_final_size(width: int, height: int, s: HiresSettings, factor: int = LATENT_FACTOR) -> None:
    """The hires image must be one latent cell (`factor` pixels: the model's latent format) to MAX_SIDE
    pixels a side."""
    final = final_size(width, height, s, factor)
    if min(final) < factor or max(final) > MAX_SIDE:
        raise UsageError(f"--hires-scale/--hires-size: the hires image would be {final[0]}x{final[1]}; "
                         f"each side must be {factor} to {MAX_SIDE}")


def target_size(width: int, height: int, s: HiresSettings,
                factor: int = LATENT_FACTOR) -> tuple[int, int, int, int]:
    """(upscale_to_x, upscale_to_y, truncate_x, truncate_y): the WebUI's calculate_target_resolution.
    truncate_* are latent columns/rows (of `factor` pixels) cropped after upscaling (Hires resize with
    another aspect)."""
    if not s.resize:
        return int(width * s.scale), int(height * s.scale), 0, 0
    if s.height == 0:
        return s.width, s.width * height // width, 0, 0
    if s.width == 0:
        return s.height * width // height, s.height, 0, 0
    if width / height < s.width / s.height:
        to_x, to_y = s.width, s.width * height // width
    else:
        to_x, to_y = s.height * width // height, s.height
    return to_x, to_y, (to_x - s.width) // factor, (to_y - s.height) // factor


def final_size(width: int, height: int, s: HiresSettings, factor: int = LATENT_FACTOR) -> tuple[int, int]:
    """The hires image's size in pixels (the cropped target latent x `factor`)."""
    to_x, to_y, tx, ty = target_size(width, height, s, factor)
    return (to_x // factor - tx) * factor, (to_y // factor - ty) * factor


# Values of the WebUI's "Use same ..." choices, which mean: not set.
_SAME = ("Use same sampler", "Use same scheduler")


def hires_from_infotext(params: dict[str, str], where: str) -> HiresSettings | None:
    """HiresSettings from WebUI parameters, or None when the image had no hires pass (the WebUI's own
    test: a denoising strength and one of the Hires upscale/upscaler/resize keys). The keys are the
    hires rows of the field table; `Hires resize` WxH sets both sides."""
    from sdcli.request.fields import FIELDS

    if "Denoising strength" not in params or not any(k in params for k in ("Hires upscale", "Hires upscaler",
                                                                             "Hires resize")):
        return None
    values: dict[str, Any] = {}
    try:
        for row in FIELDS:
            text = params.get(row.infotext or "")
            if row.part == "hires" and row.read is not None and text and text not in _SAME:
                values[row.leaf] = row.read(text)
        if "Hires resize" in params:
            values["width"], values["height"] = parse_size("Hires resize", params["Hires resize"])
        return HiresSettings(**values)
    except (ValueError, UsageError) as exc:
        raise UsageError(f"{where}: bad hires value in its infotext ({exc})") from None










