"""Hires fix: the WebUI's second pass of txt2img, run on sdcli's own loop.

What it holds: the settings (HiresSettings, the `hires` part of a GenerationRequest) and
their checks; the target size (the WebUI's calculate_target_resolution: `Hires upscale` x
the first-pass size, or `Hires resize` WxH fitted to the first pass's aspect and cropped in
latent space); the infotext keys, named and written when the WebUI writes them, and read
back for replay. The pass itself is sdcli.execution.hires.

No torch here (request.generation imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdcli.errors import UsageError

if TYPE_CHECKING:
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.samplers import SamplerChoice

LATENT_FACTOR = 8  # the WebUI's opt_f: pixels per latent cell, before a model (and its latent format) is known
MAX_SIDE = 8192


@dataclass(frozen=True)
class HiresSettings:
    """Hires fix settings (flag -> field): --hires-scale, --hires-size (width x height; 0 on one side
    keeps the aspect), --hires-steps (0 = the first pass's), --hires-denoise, --hires-upscaler,
    and None = the first pass's value for prompt, negative prompt, sampler, schedule and CFG scale."""

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

    @property
    def resize(self) -> bool:
        return bool(self.width or self.height)


def parse_size(flag: str, text: str) -> tuple[int, int]:
    """'WxH' (either side may be 0: from the aspect) -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"{flag}: {text!r} is not WIDTHxHEIGHT (e.g. 1024x1536; 0 on one side keeps the aspect)")
    return int(match.group(1)), int(match.group(2))


def hires_choices(request: GenerationRequest) -> tuple[SamplerChoice, SamplerChoice]:
    """The first pass's and the hires pass's resolved samplers; errors name the --hires-* flag."""
    from sdcli.sampling.samplers import resolve_sampler

    settings = request.hires
    first = resolve_sampler(request.sampler, request.schedule)
    try:
        try:
            second = resolve_sampler(settings.sampler or request.sampler, settings.schedule or request.schedule)
        except UsageError:
            if settings.schedule is not None or settings.sampler is None:
                raise
            # The first pass's schedule type does not fit the hires sampler (DDIM after Karras): its own.
            second = resolve_sampler(settings.sampler, "automatic")
    except UsageError as exc:
        raise UsageError(re.sub(r"^--(sampler|schedule):", r"--hires-\1:", str(exc))) from None
    return first, second


def validate_hires(request: GenerationRequest) -> None:
    """Check the hires part of a request (called by request.validate, which checks its prompts' text)."""
    from sdcli.request.fields import check_fields

    s = request.hires
    if request.mode != "txt2img":
        raise UsageError(f"--hires: hires fix is a second pass of txt2img (as in the WebUI), not of {request.mode}")
    if request.refiner:
        raise UsageError("--hires: a hires pass after --refiner is not supported yet; drop one of them")
    check_fields(request, "hires")  # each setting's range (the field table)
    for side, value in (("width", s.width), ("height", s.height)):
        if not 0 <= value <= MAX_SIDE:  # any value: the latents are cropped to whole latent pixels, as in the WebUI
            raise UsageError(f"--hires-size: {side} {value} is out of range; use 0 to {MAX_SIDE}")
    if not s.upscaler.strip():
        raise UsageError("--hires-upscaler: empty; give an upscaler name (Latent, Lanczos ...) or a file")
    check_hires_networks(request)
    hires_choices(request)
    if request.width and request.height:  # else the model's native size: checked when it is known
        check_final_size(request.width, request.height, s)


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






_TAG = re.compile(r"<[^<>:]+:[^<>]+>")


def _network_tags(text: str | None) -> set[str]:
    return set(_TAG.findall(text or ""))


def check_hires_networks(request: GenerationRequest) -> None:
    """The WebUI activates a hires prompt's own <lora:...> tags for the second pass; sdcli applies the
    first prompt's add-ons to both passes, so a hires prompt naming other ones is refused."""
    s = request.hires
    for text, base, flag in ((s.prompt, request.prompt, "--hires-prompt"),
                             (s.negative_prompt, request.negative_prompt, "--hires-negative-prompt")):
        if text is not None and _network_tags(text) != _network_tags(base):
            raise UsageError(f"{flag}: its <lora:...> tags differ from the first pass's; sdcli applies the same "
                             "add-ons to both passes (give the same tags, or none in either)")
