"""`sdcli xyz`: the WebUI's X/Y/Z plot, run as a batch (manifest, --resume, fault isolation)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli import options as o
from sdcli.cli.hires_options import HIRES_FLAGS, hires_options, hires_part


# -- The plot's own flags -------------------------------------------------------------------
def _plot_axis(name: str, example: str) -> Any:
    return Annotated[str | None, typer.Option(f"--{name}", show_default=False, rich_help_panel=o.GEN,
                                              help=f'{name.upper()} axis: "NAME: VALUES", e.g. "{example}".')]


XAxis = _plot_axis("x", "Sampler: Euler, DPM++ 2M Karras")
YAxis = _plot_axis("y", "CFG Scale: 4-10 (+2)")
ZAxis = _plot_axis("z", "Steps: 10,20")
KeepRandom = Annotated[bool, typer.Option("--keep-random-seeds", help="The WebUI's 'Keep -1 for seeds': a random "
                                          "seed per cell instead of one for the whole plot.", rich_help_panel=o.GEN)]
Legend = Annotated[bool, typer.Option("--legend/--no-legend", help="Draw the axis labels on the grids.",
                                      rich_help_panel=o.OUT)]


HELP = """Plot images over up to three axes of settings, as the WebUI's X/Y/Z plot.

Each axis is "NAME: VALUES" with the WebUI's axis names: Seed, Var. seed,
Var. strength, Steps, CFG Scale, Prompt S/R, Prompt order, Sampler, Schedule type,
Checkpoint name, VAE, Clip skip, Eta, Sigma Churn/min/max/noise, Schedule min/max
sigma, Refiner checkpoint, Refiner switch at, RNG source (and sdcli's Width, Height);
with --hires: Hires steps, Hires sampler, Hires upscaler; Denoising (with --image the
img2img strength, with --hires the hires pass's); with --edit, sdcli's Reference image
(image files, each in place of the first -i).
VALUES are comma-separated (CSV quoting), with ranges 1-5, 1-10 (+2) (step) and
1-10 [4] (count). Prompt S/R replaces its first value by each value in the prompt
and negative prompt. Each cell is written with its own infotext, then labelled
grids: xyz_grid-0000.png per Z value and xyz_grid.png with all of them.
All cells share one seed unless --keep-random-seeds. Exit 3 when some cells failed.

Examples:

  sdcli xyz "a red fox" --x "Sampler: Euler, DPM++ 2M Karras" --y "CFG Scale: 4-10 (+2)" --seed 1

  sdcli xyz "a <lora:detail:0.5> fox" --x "Prompt S/R: 0.5, 0.8, 1" --z "Steps: 10,20" -o out/plot

  sdcli xyz --edit -m ./flux-kontext -i photo.png "make the sky purple" --x "Seed: 1-4" --y "CFG Scale: 1, 2"

  sdcli xyz --resume -o out/plot     (continue a stopped plot with its recorded options)
"""



PlotOutput = Annotated[Path | None, typer.Option("--output", "-o", show_default=False, rich_help_panel=o.OUT,
                                                 help="Output folder (default: the first free outputs/xyz-NNNN).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the plot in --output: skip cells done per its "
                                      "manifest, then redraw the grids.", rich_help_panel=o.OUT)]
InputImages = Annotated[list[Path] | None, typer.Option(
    "--image", "-i", help="Input image: an img2img plot (the Denoising axis sets its strength). With --edit, a "
    "reference image (repeat for several).", rich_help_panel=o.IMG, show_default=False)]
Edit = Annotated[bool, typer.Option("--edit", help="An instruction-edit plot: each cell is the sdcli edit of the -i "
                                    "reference images (a model that edits by instruction).", rich_help_panel=o.IMG)]
Group = Annotated[int, typer.Option("--group", help="Run up to this many consecutive cells that differ only in "
                                    "prompts and seeds (a Seed or Prompt S/R axis) as one batched pipeline call "
                                    "(each cell as made alone, within a level; 1 = never).", rich_help_panel=o.GEN)]

# Options a plot records in its manifest (so `--resume -o DIR` needs nothing else).
RECORDED = ("prompt", "x", "y", "z", "image", "references", "strength", "resize", "keep_random_seeds", "model", "name",
            "image_format", "quality", "device", "dtype", "attention_slicing", "xformers", "file", "resolved",
            *HIRES_FLAGS)


@hires_options
@o.shared_options(exclude=("batch_size", "count", "output", "server"))
def xyz(
    ctx: typer.Context,
    x: XAxis = None,
    y: YAxis = None,
    z: ZAxis = None,
    output: PlotOutput = None,
    resume: Resume = False,
    keep_random_seeds: KeepRandom = False,
    legend: Legend = True,
    image: InputImages = None,
    edit: Edit = False,
    strength: o.Strength = 0.75,
    resize: o.Resize = "just",
    group: Group = 8,
    **flags: Any,
) -> None:
    from dataclasses import replace

    from sdcli.batch.manifest import resume_options
    from sdcli.batch.plan import BatchOptions
    from sdcli.batch.plotrun import cell_assets, check_model, free_folder, run_plot, upscaler_resolver
    from sdcli.batch.xyz import plan_plot
    from sdcli.cli.common import (
        REQUEST_FLAGS,
        asset_options,
        merge_quantize,
        read_stdin,
        recorded_options,
        runtime_options,
        typed,
    )
    from sdcli.cli.ui import BatchReporter, json_line, set_quiet
    from sdcli.errors import UsageError
    from sdcli.job.write import OutputOptions
    from sdcli.models.assets import plan_assets
    from sdcli.models.resolve import normalize_spec
    from sdcli.request.generation import GenerationRequest, ImageInput

    # 1. The options in force: with --resume, the recorded ones (those typed now must agree).
    if resume and output is None:
        raise UsageError("--resume: give the plot's folder with --output")
    flags = merge_quantize(flags)  # --quantize nf4 is the storage low_bits (one setting)
    prompt, prompt_opt = flags.pop("prompt"), flags.pop("prompt_opt")
    if prompt is not None and prompt_opt is not None:
        raise UsageError("PROMPT: give the prompt once, either as an argument or with --prompt")
    text = prompt if prompt is not None else prompt_opt
    folder = output or free_folder(Path("outputs"))
    inputs, references = _inputs(image or [], edit, typed(ctx, "strength"))
    current = {**{k: flags[k] for k in (*REQUEST_FLAGS, *RECORDED) if k in flags},
               "prompt": read_stdin("PROMPT") if text == "-" else text, "x": x, "y": y, "z": z,
               "keep_random_seeds": keep_random_seeds, "model": normalize_spec(flags["model"]),
               "image": inputs, "references": references, "strength": strength,
               "resize": resize, "file": "xyz", "resolved": None, "hires_upscaler": _upscaler(flags["hires_upscaler"])}
    given = {k: v for k, v in current.items() if k not in ("file", "resolved", "references") and typed(ctx, k)}
    if edit:  # the -i images as references (recorded only for an edit plot)
        given = {**{k: v for k, v in given.items() if k != "image"}, "references": references}
    if prompt is not None:
        given["prompt"] = prompt  # an argument, not an option: typed when given
    if resume:
        current = resume_options(folder, given, current)
    if current["prompt"] is None:
        raise UsageError('PROMPT: missing; give a prompt (or --prompt "" to plot without one)')
    if not any(current[a] for a in "xyz"):
        raise UsageError('--x/--y/--z: no axis; give at least one, e.g. --x "Steps: 10, 20"')
    values = {**flags, **current}

    # 2. Every cell planned and checked (axes, values, checkpoints, LoRAs) before any model loads.
    assets = asset_options(flags)
    runtime = runtime_options(values)
    base = GenerationRequest(prompt=current["prompt"], hires=hires_part(values),
                             **{k: values[k] for k in REQUEST_FLAGS if k in values})
    if current["image"]:  # an img2img plot: the input read and checked now, before any model loads
        from sdcli.io.images import prepare

        if base.hires is not None:
            raise UsageError("--hires: hires fix is a second pass of txt2img (as in the WebUI); not with --image")
        base = replace(base, mode="img2img", init=ImageInput(current["image"], current["strength"], current["resize"]))
        prepare(base)
    elif current["references"]:  # an edit plot: its references read and checked now, as sdcli edit's
        base = edit_request(base, current["references"])
    plot = plan_plot(base, (current["x"], current["y"], current["z"]), current["model"],
                     keep_random_seeds=current["keep_random_seeds"], resolved=current["resolved"],
                     check_model=lambda spec: check_model(spec, runtime.offline, assets),
                     check_assets=lambda request, vae: plan_assets(cell_assets(assets, vae), request.prompt,
                                                                   request.negative_prompt),
                     resolve_upscaler=upscaler_resolver(assets))
    if base.mode == "edit":  # what the model's family cannot edit: one line now, not one per cell
        check_editor(current["model"], base, runtime.offline, assets)
    options = BatchOptions(
        file=Path("xyz"), source="the plot's axes", defaults=base, seed=plot.resolved.get("seed"),
        model=current["model"],
        runtime=runtime, output=OutputOptions(folder, values["name"], values["image_format"], values["quality"]),
        resume=resume, assets=assets, record={**recorded_options(current), "resolved": plot.resolved}, group=group,
        lines=plot.lines,
        line_assets={line: cell_assets(assets, vae) for line, vae in plot.vaes.items()})

    # 3. Run the cells as a batch, then draw the grids.
    set_quiet(flags["quiet"])
    nx, ny, nz = plot.shape
    with BatchReporter(as_json=flags["json_out"]) as reporter:
        reporter.note(f"X/Y/Z plot: {nx * ny * nz} images on {nz} {nx}x{ny} grid{'s' if nz > 1 else ''} in {folder}")
        stats, grids = run_plot(plot, options, reporter, legend=legend)
        reporter.batch_summary(stats)
        for record in grids:  # stdout, after the cells' paths (or records)
            print(json_line(record) if flags["json_out"] else record["path"])
    if stats.interrupted:
        reporter.note(f"to continue: sdcli xyz --resume -o {shlex.quote(str(folder))}")
    raise typer.Exit(stats.exit_code)


def _inputs(images: list[Path], edit: bool, strength: bool) -> tuple[str | None, list[str] | None]:
    """-i as recorded: (the img2img input, None), or with --edit (None, the reference images); UsageError."""
    from sdcli.errors import UsageError

    paths = [str(i.expanduser().absolute()) for i in images]
    if edit:
        if not paths:
            raise UsageError("--edit: give the reference image(s) with -i IMAGE (repeat it for several)")
        if strength:
            raise UsageError("--strength: an edit draws a new image from noise (no denoising strength); leave it out")
        return None, paths
    if len(paths) > 1:
        raise UsageError(f"--image: {len(paths)} images; an img2img plot takes one input image (with --edit, "
                         "repeat -i for an edit's reference images)")
    return (paths[0] if paths else None), None


def edit_request(base: Any, references: list[str]) -> Any:
    """The base request of an edit plot: mode edit with its reference images, checked (validate) and each opened
    as sdcli edit's are, before any model loads."""
    from dataclasses import replace

    from sdcli.io.images import open_image
    from sdcli.request.generation import validate

    base = replace(base, mode="edit", references=tuple(references))
    validate(base)
    for reference in references:
        open_image(Path(reference), "--image")
    return base


def check_editor(spec: str | None, base: Any, offline: bool, assets: Any) -> None:
    """The plot's model resolved (no weights loaded) and its family checked for the edit (job.family_rules.check_edit:
    one that edits by instruction, taking the references and the options given)."""
    from sdcli.job.family_rules import check_edit, family_of
    from sdcli.models.resolve import resolve_model

    ref = resolve_model(spec, offline=offline, library=assets.library(), allow_pickle=assets.allow_pickle)
    check_edit(base, family_of(ref))


def _upscaler(spec: str) -> str:
    """--hires-upscaler as recorded: a file's absolute path (so --resume works from anywhere), else the name."""
    from sdcli.models.resolve import normalize_spec

    return normalize_spec(spec) if Path(spec).suffix else spec
