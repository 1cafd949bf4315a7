"""img2img / inpaint over a folder or glob of inputs: flags -> input set -> one batch line per input -> the runner.

One input file keeps the command's own path (run_command), unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli import options as o

Recursive = Annotated[bool, typer.Option(
    "--recursive", help="With a folder of inputs (and masks): take its subfolders too.", rich_help_panel=o.IMG)]
Resume = Annotated[bool, typer.Option(
    "--resume", help="With a folder or glob of inputs: continue the run in --output (give the same command "
    "again): inputs done per its manifest are skipped.", rich_help_panel=o.OUT)]
PngInfo = Annotated[bool, typer.Option(
    "--png-info", help="With a folder or glob of inputs: use each input's own generation parameters: its prompt and "
    "negative prompt appended to yours, its seed, CFG scale, sampler, schedule type and steps (the WebUI batch "
    "tab's PNG info).", rich_help_panel=o.IMG)]
SET_PATTERN = "[input]-[seed]"  # default --name of a run over many inputs: each output named after its input


def run_inputs(ctx: typer.Context, mode: str, flags: dict[str, Any], image: Path, *, mask: Path | None = None,
               recursive: bool = False, resume: bool = False, png_info: bool = False, **parts: Any) -> None:
    """Run `mode` on one input file as always, or on each image of a folder/glob through the batch runner."""
    from sdcli.batch.inputs import is_input_set
    from sdcli.cli.common import run_command
    from sdcli.errors import UsageError

    if is_input_set(image):
        _run_set(ctx, mode, flags, image, mask, (recursive, resume, png_info), parts)
        return
    for given, flag in ((recursive, "--recursive"), (resume, "--resume"), (png_info, "--png-info")):
        if given:
            raise UsageError(f"{flag}: only with a folder or glob of --image inputs; {image} is one file")
    if mask is not None and is_input_set(mask):
        raise UsageError(f"--mask: {mask}: a folder or glob of masks needs a folder or glob of input images")
    run_command(mode, flags, **parts)


def _run_set(ctx: typer.Context, mode: str, flags: dict[str, Any], image: Path, mask: Path | None,
             switches: tuple[bool, bool, bool], parts: dict[str, Any]) -> None:
    from dataclasses import replace

    from sdcli.batch.inputs import expand_request, input_root
    from sdcli.batch.parse import BatchLine
    from sdcli.batch.pnginfo import with_png_info
    from sdcli.batch.runner import BatchOptions, run_batch
    from sdcli.cli.common import asset_options, build_request, runtime_options, typed
    from sdcli.cli.ui import BatchReporter, set_quiet
    from sdcli.errors import UsageError
    from sdcli.job.write import OutputOptions
    from sdcli.models.resolve import normalize_spec
    from sdcli.request.generation import validate, with_input_image

    # 1. Flags and inputs (masks paired), all checked before any model loads.
    if flags["server"]:
        raise UsageError("--server: a folder or glob of inputs runs here, not on a server; leave out --server")
    folder = flags["output"] if typed(ctx, "output") else Path("outputs") / (input_root(image).resolve().name
                                                                            or "inputs")
    template = build_request(mode, flags, **parts)
    validate(template)
    template = with_input_image(template, str(image.expanduser().absolute()))
    if mask is not None:  # a quoted "~/masks/*.png" too
        template = replace(template, inpaint=replace(template.inpaint, mask=str(mask.expanduser().absolute())))
    # Seeds come from the batch's base seed (input i: base + i), as in `sdcli batch`.
    recursive, resume, png_info = switches
    expanded = expand_request(replace(template, seed=None), recursive=recursive, exclude=(folder,))
    notes: list[str] = []
    requests = [with_png_info(r, notes.append) for r in expanded.requests] if png_info else expanded.requests
    model = normalize_spec(flags["model"])
    lines = [BatchLine(number, request, model) for number, request in enumerate(requests, start=1)]

    # 2. The batch runner: manifest, --resume, a failed input recorded while the others go on, Ctrl-C.
    name = flags["name"] if typed(ctx, "name") else SET_PATTERN
    options = BatchOptions(
        file=Path(str(image)), source=f"the inputs {image}", defaults=template, seed=flags["seed"], model=model,
        runtime=runtime_options(flags), resume=resume, group=1, lines=tuple(lines), assets=asset_options(flags),
        output=OutputOptions(folder, name, flags["image_format"], flags["quality"]))
    set_quiet(flags["quiet"])
    with BatchReporter(as_json=flags["json_out"]) as reporter:
        inputs, unused = expanded.inputs, expanded.unused_masks
        reporter.note(f"{len(inputs.files)} input(s) from {image}, in name order"
                      + (f"; {inputs.skipped} file(s) not PNG/JPEG/WebP skipped" if inputs.skipped else ""))
        if unused:
            reporter.note(f"{len(unused)} mask(s) match no input and are not used (first: {unused[0]})")
        for message in notes:
            reporter.note(message)
        stats = run_batch(options, reporter)
        reporter.batch_summary(stats)
    if stats.interrupted:
        reporter.note(f"to continue: {resume_command()}")
    raise typer.Exit(stats.exit_code)


def resume_command() -> str:
    """This command line again, with --resume."""
    import shlex
    import sys

    args = sys.argv[1:]
    return shlex.join(["sdcli", *args, *([] if "--resume" in args else ["--resume"])])
