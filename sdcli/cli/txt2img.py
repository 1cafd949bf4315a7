"""`sdcli txt2img`: text to image (with --hires, the WebUI's hires fix)."""

from __future__ import annotations

from typing import Any

from sdcli.cli import options as o
from sdcli.cli.control_options import control_options
from sdcli.cli.hires_options import hires_options, hires_part
from sdcli.cli.style_options import style_options

HELP = """Generate images from a text prompt.

Examples:

  sdcli txt2img "a lighthouse at dusk, (oil painting:1.2)"

  sdcli txt2img -m ./my-model --sampler "DPM++ 2M Karras" --steps 30 --seed 42 "a red fox"

  sdcli txt2img --batch-size 2 --count 3 --clip-skip 2 -o out --json "a cat" | jq .path

  sdcli txt2img --hires --hires-scale 2 --hires-upscaler Lanczos --hires-denoise 0.5 "a castle"
"""


@control_options
@hires_options
@style_options
@o.shared_options(exclude=("comfy_edit", "reference_scale"))
def txt2img(**flags: Any) -> None:
    from sdcli.cli.common import run_command

    run_command("txt2img", flags, hires=hires_part(flags))
