"""`sdcli batch`: run a prompt file (text, WebUI lines or JSONL), resumable and multi-process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
                                                  help="Output folder (default: outputs/<prompt file name>).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the batch in --output: skip items done per its "
                                      "manifest and files on disk.", rich_help_panel=o.OUT)]
Group = Annotated[int, typer.Option("--group", help="Run up to this many images of a line's --count batches as one "
                                    "batched pipeline call (same pixels; 1 = never).", rich_help_panel=o.GEN)]
Grid = Annotated[bool, typer.Option("--grid", help="Also write grid.png, a labelled contact sheet.",
                                    rich_help_panel=o.OUT)]


@o.shared_options(exclude=("prompt", "prompt_opt", "output", "server"))
def batch(
    file: Annotated[Path, typer.Argument(help="Prompt file.", show_default=False)],
    fmt: Format = "auto",
    output: BatchOutput = None,
    resume: Resume = False,
    grid: Grid = False,
    group: Group = 8,
    **flags: Any,
) -> None:
    from sdcli.batch.runner import BatchOptions, run_batch
    from sdcli.cli.common import REQUEST_FLAGS, runtime_options
    from sdcli.cli.ui import BatchReporter
    from sdcli.core.job import OutputOptions
    from sdcli.core.request import GenerationRequest

    # The base seed is the batch's own (item i gets BASE + i); the rest are per-line defaults.
    defaults = GenerationRequest(prompt="", **{k: flags[k] for k in REQUEST_FLAGS if k != "seed"})
    options = BatchOptions(
        file=file, fmt=fmt, defaults=defaults, seed=flags["seed"], model=flags["model"],
        runtime=runtime_options(flags),
        output=OutputOptions(output or Path("outputs") / file.stem, flags["name"]), resume=resume, group=group,
    )
    with BatchReporter(as_json=flags["json_out"]) as reporter:
        stats = run_batch(options, reporter)
        reporter.batch_summary(stats)
    if grid and stats.process == 0 and stats.folder is not None and (stats.folder / "manifest.jsonl").is_file():
        from sdcli.batch.grid import write_grid

        reporter.note(f"contact sheet: {write_grid(stats.folder / 'manifest.jsonl')}")
    raise typer.Exit(stats.exit_code)
