"""`sdcli upscale`: run an upscaler on existing images, keeping their metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli import options as o
from sdcli.cli.folders import Recursive, Resume

HELP = """Upscale existing images with Lanczos, Nearest or an ESRGAN-family model file (the WebUI's Extras tab).

The input's metadata is kept (the WebUI infotext and sdcli's record) and the WebUI's
"Postprocess upscale by / upscaler" keys are added; files keep their name and format
in the output folder and never overwrite one there.

Examples:

  sdcli upscale photo.png --scale 2 -o big

  sdcli upscale a.png b.jpg --upscaler ./4x-UltraSharp.safetensors --scale 4 -o big --json

  sdcli upscale render.png --size 1920x1080 --upscaler Lanczos -o big   # scale up, crop the centre

  sdcli upscale a.png --models-dir ~/models --upscaler 4x-UltraSharp -o big   # models/ESRGAN/ by name

  sdcli upscale photos/ --recursive -o big   # a folder (or a quoted glob "photos/*.jpg"): a manifest in -o,
  sdcli upscale photos/ --recursive -o big --resume   # subfolders kept; a failed input does not stop the others
"""


def upscale(
    images: Annotated[list[Path], typer.Argument(help="Images to upscale (PNG, JPEG or WebP), or folders or "
                                                 "globs of them.", show_default=False, metavar="IMAGE...")],
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
    recursive: Recursive = False,
    resume: Resume = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    from sdcli.batch.upscale_run import is_set_run
    from sdcli.cli.ui import console, json_line, set_quiet
    from sdcli.errors import UsageError
    from sdcli.io.output import check_folder, prepare_folder
    from sdcli.job.upscale import UpscaleOptions, plan_upscale, upscale_one
    from sdcli.models.folders import library_from
    from sdcli.models.upscalers import ready
    from sdcli.request.hires import parse_size

    set_quiet(quiet)
    if scale is not None and size is not None:
        raise UsageError("--scale/--size: give one of them")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device: unknown device {device!r}; choose from cpu, cuda")
    width, height = parse_size("--size", size) if size else (0, 0)
    options = UpscaleOptions(upscaler, 2.0 if scale is None else scale, width, height)
    if is_set_run(images):
        _run_set(images, options, output, (recursive, resume, json_out), library_from(models_dir, webui_dir),
                 (allow_pickle, device))
    for given, flag in ((recursive, "--recursive"), (resume, "--resume")):
        if given:
            raise UsageError(f"{flag}: only with a folder or glob of images among IMAGE...; all given are files")
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


def _run_set(images: list[Path], options: Any, output: Path, switches: tuple[bool, bool, bool], library: Any,
             loading: tuple[bool, str]) -> None:
    """Folders/globs among IMAGE...: each input its own item in -o's manifest (batch/upscale_run.py)."""
    from sdcli.batch.upscale_run import expand_all, run_header, run_set
    from sdcli.cli.folders import resume_command
    from sdcli.cli.ui import console, json_line, note, warning
    from sdcli.io.output import check_folder
    from sdcli.job.upscale import check_upscaler
    from sdcli.models.upscalers import ready

    recursive, resume, json_out = switches
    ref = check_upscaler(options, library, loading[0])
    files, skipped = expand_all(images, recursive, output)
    check_folder(output)

    def emit(record: dict[str, Any]) -> None:
        if record["type"] == "item":  # failed
            warning(f"item {record['item']} (input {record['input']}) failed: {record['error']}")
        else:
            console.print(f"{record['source']} -> {record['path']} ({record['width']}x{record['height']}, "
                          f"{ref.name})", markup=False, highlight=False)
        if json_out or record["type"] != "item":
            print(json_line(record) if json_out else record["path"], flush=True)

    stats = run_set(files, run_header(images, files, options, recursive), output, options, resume,
                    lambda: ready(ref, "--upscaler", loading[0], loading[1]), note, emit, skipped)
    console.print(f"upscaled {stats.done}, skipped {stats.skipped} (done before), failed {stats.failed} of "
                  f"{stats.total} in {stats.seconds:.1f} s" + (" (interrupted)" if stats.interrupted else ""),
                  markup=False, highlight=False)
    if stats.interrupted:
        note(f"to continue: {resume_command()}")
    raise typer.Exit(stats.exit_code)
