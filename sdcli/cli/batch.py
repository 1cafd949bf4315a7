"""`sdcli batch`: run a prompt file (text, WebUI lines or JSONL), resumable and multi-process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.cli import options as o

HELP = """Run every prompt of a file: plain lines, WebUI "--key value" lines, or JSONL.

Command-line options are defaults; each line overrides them. Every line is checked
first (all bad lines reported as FILE:LINE: reason, exit 2). Item i gets seed
BASE + i (a line's own --seed wins). Images and a manifest.jsonl go to --output;
--resume continues a stopped batch. Exit 3 when some items failed.

Examples:

  sdcli batch prompts.txt -m ./my-model --steps 30 --seed 1

  sdcli batch prompts.jsonl -o out/run1 --grid --json | jq -r .path

  sdcli batch prompts.txt -o out/run1 --seed 1 --resume

  accelerate launch --multi_gpu --num_processes 2 -m sdcli batch prompts.txt -o out/run2
"""

Format = Annotated[str, typer.Option("--format", help="auto (by suffix/content), text, webui or jsonl.",
                                     rich_help_panel=o.OUT)]
BatchOutput = Annotated[Path | None, typer.Option("--output", "-o", show_default=False, rich_help_panel=o.OUT,
                                                  help="Output folder [default: outputs/<file name>]")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the batch in --output: skip items done per its "
                                      "manifest and files on disk.", rich_help_panel=o.OUT)]
Grid = Annotated[bool, typer.Option("--grid", help="Also write grid.png, a labelled contact sheet.",
                                    rich_help_panel=o.OUT)]


def batch(
    file: Annotated[Path, typer.Argument(help="Prompt file.", show_default=False)],
    fmt: Format = "auto",
    negative_prompt: o.Negative = "",
    steps: o.Steps = o.DEFAULTS["steps"],
    cfg_scale: o.Cfg = o.DEFAULTS["cfg_scale"],
    seed: o.Seed = None,
    subseed: o.Subseed = None,
    subseed_strength: o.SubseedStrength = 0.0,
    width: o.Width = None,
    height: o.Height = None,
    batch_size: o.BatchSize = 1,
    count: o.Count = 1,
    sampler: o.Sampler = o.DEFAULTS["sampler"],
    schedule: o.Schedule = "automatic",
    clip_skip: o.ClipSkip = 1,
    model: o.Model = None,
    offline: o.Offline = False,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    attention_slicing: o.Slicing = "auto",
    xformers: o.Xformers = False,
    output: BatchOutput = None,
    name: o.Name = "[num]-[seed]",
    resume: Resume = False,
    grid: Grid = False,
    json_out: o.Json = False,
) -> None:
    from sdcli.cli.ui import BatchReporter
    from sdcli.core.batch_run import BatchOptions, run_batch
    from sdcli.core.job import OutputOptions
    from sdcli.core.request import GenerationRequest, RuntimeOptions

    defaults = GenerationRequest(
        prompt="", negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale,
        width=width, height=height, batch_size=batch_size, count=count, sampler=sampler,
        schedule=schedule, clip_skip=clip_skip, subseed=subseed, subseed_strength=subseed_strength,
    )
    options = BatchOptions(
        file=file, fmt=fmt, defaults=defaults, seed=seed, model=model,
        runtime=RuntimeOptions(device=device, dtype=dtype, attention_slicing=attention_slicing,
                               xformers=xformers, offline=offline),
        output=OutputOptions(output or Path("outputs") / file.stem, name), resume=resume,
    )
    with BatchReporter(as_json=json_out) as reporter:
        stats = run_batch(options, reporter)
        reporter.batch_summary(stats)
    if grid and stats.process == 0 and stats.folder is not None and (stats.folder / "manifest.jsonl").is_file():
        from sdcli.core.grid import write_grid

        reporter.note(f"contact sheet: {write_grid(stats.folder / 'manifest.jsonl')}")
    raise typer.Exit(stats.exit_code)
