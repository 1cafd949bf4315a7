"""The one Rich console (stderr) and the progress reporter for jobs."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, highlight=False, no_color=bool(os.environ.get("NO_COLOR")) or None)


def error(message: str) -> None:
    """The one-line error format: `error: ...` on stderr."""
    console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def note(message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}", markup=True, soft_wrap=True)


class CliReporter:
    """Renders a job: bars on a terminal (images + steps, with ETA), plain lines otherwise.

    Data goes to stdout: each written path, or with --json one JSON record per image.
    """

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        self.progress: Any = None
        self.started = time.monotonic()
        self.count = 0

    def __enter__(self) -> CliReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def note(self, message: str) -> None:
        note(message)

    def start(self, total_images: int, steps: int) -> None:
        if not console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self.images_task = self.progress.add_task("images", total=total_images)
        self.steps_task = self.progress.add_task("steps", total=steps)
        self.progress.start()

    def step(self, step: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.steps_task, completed=step, total=total)

    def image(self, record: dict[str, Any]) -> None:
        self.count += 1
        if self.progress is not None:
            self.progress.update(self.images_task, advance=1)
            self.progress.reset(self.steps_task)
        line = json.dumps(record, ensure_ascii=False) if self.as_json else record["path"]
        if self.progress is not None and sys.stdout.isatty():
            self.progress.console.out(line, highlight=False)  # same screen: print above the bars
        else:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def summary(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        seconds = time.monotonic() - self.started
        seeds = f"seed {records[0]['seed']}" + (f"-{records[-1]['seed']}" if len(records) > 1 else "")
        if records[0].get("subseed") is not None:
            seeds += f", variation seed {records[0]['subseed']} (strength {records[0]['subseed_strength']:g})"
        console.print(f"wrote {len(records)} image(s), {seeds}, in {seconds:.1f} s", highlight=False)


def run_and_report(request: Any, model: str | None, *, offline: bool, device: str, dtype: str,
                   attention_slicing: str, xformers: bool, output: Any, name: str, json_out: bool) -> None:
    """The shared tail of every generating command: runtime flags -> run_job -> printed records."""
    from sdcli.core.job import OutputOptions, run_job
    from sdcli.core.request import RuntimeOptions

    runtime = RuntimeOptions(device=device, dtype=dtype, attention_slicing=attention_slicing,
                             xformers=xformers, offline=offline)
    with CliReporter(as_json=json_out) as reporter:
        records = run_job(request, runtime, model, OutputOptions(output, name), reporter)
    reporter.summary(records)
