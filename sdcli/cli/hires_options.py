"""The hires fix flags (--hires, --hires-*) of txt2img and xyz, and the request part they make."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from sdcli.cli import options as o
from sdcli.request.fields import allowed as r

# -- The flags -------------------------------------------------------------------
HIRES = "Hires fix"
Hires = Annotated[bool, typer.Option("--hires", help="Hires fix: upscale the image, then run a second img2img pass "
                                     "at the larger size (the WebUI's).", rich_help_panel=HIRES)]
HiresScale = Annotated[float, typer.Option("--hires-scale", help=f"Upscale by ({r('hires.scale')}); ignored with "
                                           "--hires-size.",
                                           rich_help_panel=HIRES)]
HiresSize = Annotated[str | None, typer.Option(
    "--hires-size", metavar="WxH", help="Upscale to WIDTHxHEIGHT instead (0 on one side keeps the aspect; another "
    "aspect is cropped, as the WebUI's 'Resize width/height to').", rich_help_panel=HIRES, show_default=False)]
HiresSteps = Annotated[int, typer.Option("--hires-steps", help=f"Steps of the hires pass ({r('hires.steps')}; 0 = the "
                                         "same as --steps); "
                                         "run exactly, as in the WebUI.", rich_help_panel=HIRES)]
HiresDenoise = Annotated[float, typer.Option("--hires-denoise", help="Denoising strength of the hires pass "
                                             f"({r('hires.denoise')}).", rich_help_panel=HIRES)]
HiresUpscaler = Annotated[str, typer.Option(
    "--hires-upscaler", help="Latent, 'Latent (antialiased)', 'Latent (bicubic)', 'Latent (bicubic antialiased)', "
    "'Latent (nearest)', 'Latent (nearest-exact)', Lanczos, Nearest, None, or an ESRGAN-family .safetensors file "
    "(path, or name in the models folder's ESRGAN/; needs spandrel).", rich_help_panel=HIRES)]
HiresPrompt = Annotated[str | None, typer.Option("--hires-prompt", help="Prompt of the hires pass [default: the "
                                                 "prompt]", rich_help_panel=HIRES, show_default=False)]
HiresNegative = Annotated[str | None, typer.Option("--hires-negative-prompt", help="Negative prompt of the hires "
                                                   "pass [default: the negative prompt]", rich_help_panel=HIRES,
                                                   show_default=False)]
HiresSampler = Annotated[str | None, typer.Option("--hires-sampler", help="Sampler of the hires pass [default: "
                                                  "--sampler]", rich_help_panel=HIRES, show_default=False)]
HiresSchedule = Annotated[str | None, typer.Option("--hires-schedule", help="Schedule type of the hires pass "
                                                   "[default: --schedule]", rich_help_panel=HIRES,
                                                   show_default=False)]
HiresCfg = Annotated[float | None, typer.Option("--hires-cfg", help=f"CFG scale of the hires pass "
                                                f"({r('hires.cfg_scale')}; WebUI Forge's 'Hires CFG Scale') "
                                                "[default: --cfg-scale]", rich_help_panel=HIRES,
                                                show_default=False)]
HiresDistilledCfg = Annotated[float | None, typer.Option(
    "--hires-distilled-cfg", help=f"Distilled CFG scale of the hires pass ({r('hires.distilled_cfg_scale')}; "
    "WebUI Forge's 'Hires Distilled CFG Scale', for guidance-distilled models such as Flux dev) "
    "[default: --distilled-cfg]", rich_help_panel=HIRES, show_default=False)]

HIRES_DEFAULTS: dict[str, Any] = {"hires_scale": 2.0, "hires_size": None, "hires_steps": 0, "hires_denoise": 0.7,
                                  "hires_upscaler": "Latent", "hires_prompt": None, "hires_negative_prompt": None,
                                  "hires_sampler": None, "hires_schedule": None, "hires_cfg": None,
                                  "hires_distilled_cfg": None}
HIRES_FLAGS = ("hires", *HIRES_DEFAULTS)


def _hires(
    hires: Hires = False,
    hires_scale: HiresScale = HIRES_DEFAULTS["hires_scale"],
    hires_size: HiresSize = None,
    hires_steps: HiresSteps = HIRES_DEFAULTS["hires_steps"],
    hires_denoise: HiresDenoise = HIRES_DEFAULTS["hires_denoise"],
    hires_upscaler: HiresUpscaler = HIRES_DEFAULTS["hires_upscaler"],
    hires_prompt: HiresPrompt = None,
    hires_negative_prompt: HiresNegative = None,
    hires_sampler: HiresSampler = None,
    hires_schedule: HiresSchedule = None,
    hires_cfg: HiresCfg = None,
    hires_distilled_cfg: HiresDistilledCfg = None,
) -> None:
    """Template only: the hires fix flags."""


def hires_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command (decorated by options.shared_options) the hires fix flags too."""
    return o._append(func, (_hires,), ())


def hires_part(flags: dict[str, Any]) -> Any:
    """HiresSettings from the --hires* flags in `flags`, or None without --hires.

    A --hires-* flag changed from its default without --hires is a usage error (one line)."""
    from sdcli.errors import UsageError
    from sdcli.request.hires import HiresSettings, parse_size

    if not flags["hires"]:
        stray = next((name for name, default in HIRES_DEFAULTS.items() if flags[name] != default), None)
        if stray is not None:
            raise UsageError(f"--{stray.replace('_', '-')}: given without --hires; add --hires to run the hires pass")
        return None
    width, height = parse_size("--hires-size", flags["hires_size"]) if flags["hires_size"] else (0, 0)
    return HiresSettings(scale=flags["hires_scale"], width=width, height=height, steps=flags["hires_steps"],
                         denoise=flags["hires_denoise"], upscaler=flags["hires_upscaler"],
                         prompt=flags["hires_prompt"], negative_prompt=flags["hires_negative_prompt"],
                         sampler=flags["hires_sampler"], schedule=flags["hires_schedule"], cfg_scale=flags["hires_cfg"],
                         distilled_cfg_scale=flags["hires_distilled_cfg"])
