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

  sdcli batch --resume -o out/run1     (continue a stopped batch with its recorded options)

  accelerate launch --multi_gpu --num_processes 2 -m sdcli batch prompts.txt -o out/run2
"""

Format = Annotated[str, typer.Option("--prompt-format", help="Prompt file format: auto (by suffix/content), text, "
                                     "webui or jsonl.",
                                     rich_help_panel=o.OUT)]
BatchOutput = Annotated[Path | None, typer.Option("--output", "-o", show_default=False, rich_help_panel=o.OUT,
                                                  help="Output folder (default: outputs/<prompt file name>).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the batch in --output: skip items done per its "
                                      "manifest and files on disk.", rich_help_panel=o.OUT)]
Group = Annotated[int, typer.Option("--group", help="Run up to this many images as one batched pipeline call: a "
                                    "line's --count batches, and consecutive lines that differ only in prompts and "
                                    "seeds (each image as made alone, within a level; 1 = never).",
                                    rich_help_panel=o.GEN)]
Grid = Annotated[bool, typer.Option("--grid", help="Also write grid.png, a labelled contact sheet.",
                                    rich_help_panel=o.OUT)]


# Options a batch records in its manifest (so `--resume -o DIR` needs nothing else); not --json/--grid/--offline.
RECORDED = ("file", "fmt", "model", "name", "image_format", "quality", "seed", "device", "dtype", "attention_slicing",
            "xformers")


@o.shared_options(exclude=("prompt", "prompt_opt", "output", "server"))
def batch(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Prompt file; - reads it from stdin (optional with --resume: "
                                                "the recorded one).", show_default=False)] = None,
    fmt: Format = "auto",
    output: BatchOutput = None,
    resume: Resume = False,
    grid: Grid = False,
    group: Group = 8,
    **flags: Any,
) -> None:
    from sdcli.batch.manifest import resume_options
    from sdcli.batch.runner import BatchOptions, run_batch
    from sdcli.cli.common import REQUEST_FLAGS, asset_options, merge_quantize, recorded_options, runtime_options, typed
    from sdcli.cli.ui import BatchReporter, set_quiet
    from sdcli.errors import UsageError
    from sdcli.job.write import OutputOptions
    from sdcli.models.resolve import normalize_spec
    from sdcli.request.generation import GenerationRequest

    # 1. The options in force: with --resume, the recorded ones (those typed now must agree).
    if file is None and not (resume and output):
        raise UsageError("FILE: missing; give a prompt file (or --resume -o DIR to continue a batch)")
    stdin = str(file) == "-"  # the prompt file on stdin
    flags = merge_quantize(flags)  # --quantize nf4 is the storage low_bits (one setting)
    folder = output or Path("outputs") / ("stdin" if stdin else file.stem)  # type: ignore[union-attr]
    current = {**{k: flags[k] for k in (*REQUEST_FLAGS, *RECORDED) if k in flags}, "fmt": fmt,
               "file": "-" if stdin else str(file.resolve()) if file else None,
               "model": normalize_spec(flags["model"])}
    given = {k: v for k, v in current.items() if typed(ctx, k)}
    if resume:
        current = resume_options(folder, given, current)
    values = {**flags, **current}

    # 2. Run. The base seed is the batch's own (item i gets BASE + i); the rest are per-line defaults.
    defaults = GenerationRequest(prompt="", **{k: values[k] for k in REQUEST_FLAGS if k != "seed"})
    options = BatchOptions(
        file=Path(values["file"]), fmt=values["fmt"], defaults=defaults, seed=values["seed"], model=values["model"],
        runtime=runtime_options(values), resume=resume, group=group,
        output=OutputOptions(folder, values["name"], values["image_format"], values["quality"]),
        record=recorded_options({k: current[k] for k in (*REQUEST_FLAGS, *RECORDED)}), assets=asset_options(flags),
    )
    set_quiet(flags["quiet"])
    with BatchReporter(as_json=flags["json_out"]) as reporter:
        stats = run_batch(options, reporter)
        reporter.batch_summary(stats)
    if stats.interrupted and stats.process == 0:
        import shlex

        reporter.note(f"to continue: sdcli batch --resume -o {shlex.quote(str(folder))}")
    if grid and stats.process == 0 and stats.folder is not None and (stats.folder / "manifest.jsonl").is_file():
        from sdcli.batch.grid import write_grid

        reporter.note(f"contact sheet: {write_grid(stats.folder / 'manifest.jsonl')}")
    raise typer.Exit(stats.exit_code)

