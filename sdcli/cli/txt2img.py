"""`sdcli txt2img`: text to image (with --hires, the WebUI's hires fix)."""

from __future__ import annotations

from typing import Any

from sdcli.cli import options as o
from sdcli.cli.control_options import control_options

HELP = """Generate images from a text prompt.

Examples:

  sdcli txt2img "a lighthouse at dusk, (oil painting:1.2)"

  sdcli txt2img -m ./my-model --sampler "DPM++ 2M Karras" --steps 30 --seed 42 "a red fox"

  sdcli txt2img --batch-size 2 --count 3 --clip-skip 2 -o out --json "a cat" | jq .path

  sdcli txt2img --hires --hires-scale 2 --hires-upscaler Lanczos --hires-denoise 0.5 "a castle"
"""

HIRES_DEFAULTS: dict[str, Any] = {"hires_scale": 2.0, "hires_size": None, "hires_steps": 0, "hires_denoise": 0.7,
                                  "hires_upscaler": "Latent", "hires_prompt": None, "hires_negative_prompt": None,
                                  "hires_sampler": None, "hires_schedule": None, "hires_cfg": None}
HIRES_FLAGS = tuple(HIRES_DEFAULTS)


@control_options
@o.shared_options()
def txt2img(
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
    **flags: Any,
) -> None:
    from sdcli.cli.common import run_command
    from sdcli.errors import UsageError

    given = {name: value for name, value in locals().items() if name in HIRES_FLAGS}
    stray = [name for name in HIRES_FLAGS if given[name] != HIRES_DEFAULTS[name]]
    if stray and not hires:
        raise UsageError(f"--{stray[0].replace('_', '-')}: given without --hires; add --hires to run the hires pass")
    run_command("txt2img", flags, hires=hires_settings(given) if hires else None)


def hires_settings(flags: dict[str, Any]) -> Any:
    """HiresSettings from the --hires-* flags."""
    from sdcli.core.hires import HiresSettings, parse_size

    width, height = parse_size("--hires-size", flags["hires_size"]) if flags["hires_size"] else (0, 0)
    return HiresSettings(scale=flags["hires_scale"], width=width, height=height, steps=flags["hires_steps"],
                         denoise=flags["hires_denoise"], upscaler=flags["hires_upscaler"],
                         prompt=flags["hires_prompt"], negative_prompt=flags["hires_negative_prompt"],
                         sampler=flags["hires_sampler"], schedule=flags["hires_schedule"], cfg_scale=flags["hires_cfg"])
