"""`sdcli img2img`: image (and text) to image."""

from __future__ import annotations

from typing import Any

from sdcli.cli import options as o
from sdcli.cli.control_options import control_options

HELP = """Generate images from an input image and a prompt (the WebUI's img2img).

The input is resized to --width/--height (default: its own size rounded to a multiple of 8) by \
--resize. Steps actually run = --steps x --strength, as in the WebUI; the infotext records \
"Denoising strength".

Examples:

  sdcli img2img --image photo.png --strength 0.75 "an oil painting of a harbour"

  sdcli img2img -i sketch.jpg --strength 0.5 -W 512 -H 768 --resize crop --seed 7 "a castle"

  sdcli img2img -i in.webp --steps 40 --strength 0.3 --batch-size 2 --json "watercolour" | jq .path
"""


@control_options
@o.shared_options()
def img2img(image: o.Image, strength: o.Strength = 0.75, resize: o.Resize = "just", **flags: Any) -> None:
    from sdcli.cli.common import run_command
    from sdcli.core.request import ImageInput

    run_command("img2img", flags, init=ImageInput(str(image.absolute()), strength, resize))
