"""`sdcli upscale`: run an upscaler on existing images, keeping their metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.cli import options as o

HELP = """Upscale existing images with Lanczos, Nearest or an ESRGAN-family model file (the WebUI's Extras tab).

The input's metadata is kept (the WebUI infotext and sdcli's record) and the WebUI's
"Postprocess upscale by / upscaler" keys are added; files keep their name and format
in the output folder and never overwrite one there.

Examples:

  sdcli upscale photo.png --scale 2 -o big

  sdcli upscale a.png b.jpg --upscaler ./4x-UltraSharp.safetensors --scale 4 -o big --json

  sdcli upscale render.png --size 1920x1080 --upscaler Lanczos -o big   # scale up, crop the centre

  sdcli upscale a.png --models-dir ~/models --upscaler 4x-UltraSharp -o big   # models/ESRGAN/ by name
"""


def upscale(
    images: Annotated[list[Path], typer.Argument(help="Images to upscale (PNG, JPEG or WebP).", show_default=False,
                                                 metavar="IMAGE...")],
    upscaler: Annotated[str, typer.Option("--upscaler", "-u", help="Lanczos, Nearest, or an ESRGAN-family "
                                          ".safetensors file (path, or a name in the models folder's ESRGAN/; "
                                          "needs spandrel).")] = "Lanczos",
    scale: Annotated[float | None, typer.Option("--scale", help="Upscale by (more than 1, at most 8; the size is "
                                                "floored to a multiple of 8, as the WebUI's) [default: 2]",
                                                show_default=False)] = None,
    size: Annotated[str | None, typer.Option("--size", metavar="WxH", help="Upscale to exactly WIDTHxHEIGHT "
                                             "(by the larger ratio, then the centre cropped).",
                                             show_default=False)] = None,
    output: o.Output = o.DEFAULTS["output"],
    models_dir: o.ModelsDir = None,
    webui_dir: o.WebuiDir = None,
    allow_pickle: o.AllowPickle = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (model files only).")] = "cpu",
    json_out: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    from sdcli.cli.ui import console, json_line, set_quiet
    from sdcli.core.hires import parse_size
    from sdcli.core.output import check_folder, prepare_folder
    from sdcli.core.upscale import UpscaleOptions, plan_upscale, upscale_one
    from sdcli.errors import UsageError
    from sdcli.models.library import library_from
    from sdcli.models.upscalers import ready

    set_quiet(quiet)
    if scale is not None and size is not None:
        raise UsageError("--scale/--size: give one of them")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device: unknown device {device!r}; choose from cpu, cuda")
    width, height = parse_size("--size", size) if size else (0, 0)
    options = UpscaleOptions(upscaler, 2.0 if scale is None else scale, width, height)
    ref = plan_upscale(options, images, library_from(models_dir, webui_dir), allow_pickle)
    check_folder(output)
    ready_upscaler = ready(ref, "--upscaler", allow_pickle, device)
    folder = prepare_folder(output)
    for path in images:
        record = upscale_one(path, ready_upscaler, options, folder)
        if json_out:
            print(json_line(record), flush=True)
        else:
            print(record["path"], flush=True)
        console.print(f"{path} -> {record['path']} ({record['width']}x{record['height']}, {ref.name})")
