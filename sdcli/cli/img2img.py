"""`sdcli img2img`: image (and text) to image."""

from __future__ import annotations

from typing import Any

import typer

from sdcli.cli import folders as f
from sdcli.cli import options as o
from sdcli.cli.control_options import control_options
from sdcli.cli.style_options import style_options

HELP = """Generate images from an input image and a prompt (the WebUI's img2img).

The input is resized to --width/--height (default: its own size rounded to a multiple of 8) by \
--resize. Steps actually run = --steps x --strength, as in the WebUI; the infotext records \
"Denoising strength".

--image may be a folder (with --recursive, its subfolders too) or a quoted glob: each PNG/JPEG/WebP \
input, in natural name order, is item i of a batch with seed + i, written as <input>-<seed>.png with a \
manifest.jsonl in --output (default outputs/<folder name>); a failed input is recorded and the others go \
on (exit 3); --resume continues a stopped run.

Examples:

  sdcli img2img --image photo.png --strength 0.75 "an oil painting of a harbour"

  sdcli img2img -i sketch.jpg --strength 0.5 -W 512 -H 768 --resize crop --seed 7 "a castle"

  sdcli img2img -i in.webp --steps 40 --strength 0.3 --batch-size 2 --json "watercolour" | jq .path

  sdcli img2img -i photos/ --seed 1 -o out/paintings "an oil painting"     (every image of a folder)

  sdcli img2img -i 'shots/*.jpg' --resume -o out/shots "an oil painting"   (a quoted glob; continue a run)
"""


@control_options
@style_options
@o.shared_options(exclude=("comfy_edit", "reference_scale"))
def img2img(ctx: typer.Context, image: o.Image, strength: o.Strength = 0.75, resize: o.Resize = "just",
            recursive: f.Recursive = False, resume: f.Resume = False, png_info: f.PngInfo = False,
            **flags: Any) -> None:
    from sdcli.request.generation import ImageInput

    f.run_inputs(ctx, "img2img", flags, image, recursive=recursive, resume=resume, png_info=png_info,
                 init=ImageInput(str(image.absolute()), strength, resize))
