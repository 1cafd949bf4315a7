"""The hires fix flags (--hires, --hires-*) of txt2img and xyz, and the request part they make."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdcli.cli import options as o

HIRES_DEFAULTS: dict[str, Any] = {"hires_scale": 2.0, "hires_size": None, "hires_steps": 0, "hires_denoise": 0.7,
                                  "hires_upscaler": "Latent", "hires_prompt": None, "hires_negative_prompt": None,
                                  "hires_sampler": None, "hires_schedule": None, "hires_cfg": None}
HIRES_FLAGS = ("hires", *HIRES_DEFAULTS)


def _hires(
    hires: o.Hires = False,
    hires_scale: o.HiresScale = HIRES_DEFAULTS["hires_scale"],
    hires_size: o.HiresSize = None,
    hires_steps: o.HiresSteps = HIRES_DEFAULTS["hires_steps"],
    hires_denoise: o.HiresDenoise = HIRES_DEFAULTS["hires_denoise"],
    hires_upscaler: o.HiresUpscaler = HIRES_DEFAULTS["hires_upscaler"],
    hires_prompt: o.HiresPrompt = None,
    hires_negative_prompt: o.HiresNegative = None,
    hires_sampler: o.HiresSampler = None,
    hires_schedule: o.HiresSchedule = None,
    hires_cfg: o.HiresCfg = None,
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
                         sampler=flags["hires_sampler"], schedule=flags["hires_schedule"], cfg_scale=flags["hires_cfg"])
