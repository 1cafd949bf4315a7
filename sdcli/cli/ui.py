"""The one Rich console (stderr) and the progress reporter for jobs."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

from sdcli.io.metadata import escape_control

# emoji=False: a prompt, path or message holding ":b:" or ":smile:" is printed as written, not as an emoji.
console = Console(stderr=True, highlight=False, emoji=False, no_color=bool(os.environ.get("NO_COLOR")) or None)


PLAIN_INTERVAL = float(os.environ.get("SDCLI_PROGRESS_SECONDS", "10"))  # plain progress lines: at most this often
JSON_SCHEMA = 1  # version of every --json record (README: "JSON output"); bump on incompatible changes
_RAW_CONTROL = re.compile(r"[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_line(record: dict[str, Any]) -> str:
    """One --json record: `"schema": 1` first, then the record's own `"type"` and fields.

    json.dumps escapes C0 controls; C1 controls and bidi overrides (which ensure_ascii=False
    would print raw) are escaped too, so a record piped to a terminal cannot drive it.
    """
    text = json.dumps({"schema": JSON_SCHEMA, **record}, ensure_ascii=False)
    return _RAW_CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def set_quiet(quiet: bool) -> None:
    """--quiet: nothing on stderr but errors and warnings."""
    console.quiet = quiet


def error(message: str) -> None:
    """The one-line error format: `error: ...` on stderr (shown even with --quiet)."""
    _always(f"[bold red]error:[/] {escape(escape_control(message))}")


def _always(markup: str) -> None:
    quiet, console.quiet = console.quiet, False
    try:
        console.print(markup, markup=True, soft_wrap=True)
    finally:
        console.quiet = quiet


def note(message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(escape_control(message))}", markup=True, soft_wrap=True)


def warning(message: str) -> None:
    _always(f"[yellow]warning:[/] {escape(escape_control(message))}")


def show_replay_plan(image: Any, plan: Any) -> None:
    """Before anything loads: every setting replay will use and where it came from."""
    console.print(f"replaying {escape_control(str(image))} (from its {plan.origin}):", markup=False,
                  highlight=False, soft_wrap=True)
    rows = plan.rows()
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        console.print(f"  {name:<{width}}  {escape_control(value)}  [{source}]", markup=False, highlight=False,
                      soft_wrap=True)
    if plan.ignored:
        warning(f"replay cannot honour these keys of the image, so they are ignored: {', '.join(plan.ignored)}")
    for line in plan.notes:
        note(line)


class CliReporter:
    """Renders a job: bars on a terminal (images + steps, with ETA), plain lines otherwise.

    Data goes to stdout: each written path, or with --json one JSON record per image.
    """

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        self.progress: Any = None
        self.started = time.monotonic()
        self.count = 0
        self.label, self.total, self.done = "images", 0, 0.0  # done: finished (or skipped) images
        self.first_done = 0.0  # images already done when this run started (a resumed batch)
        self.call_started: float | None = None  # when the current pipeline call took its first step
        self.last_plain = time.monotonic()

    def __enter__(self) -> CliReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def note(self, message: str) -> None:
        note(message)

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        """A stage before the images (loading the model): a spinner on a terminal; in logs two plain lines,
        once it has taken PLAIN_INTERVAL (a quick load says nothing, so a failure stays one line)."""
        began = time.monotonic()
        if console.is_terminal:
            with console.status(f"{escape(label)} …"):
                yield
            return
        import threading

        def announce() -> None:  # logs hear of a stage only once it has taken PLAIN_INTERVAL
            console.print(f"{label} …", markup=False, highlight=False)

        timer = threading.Timer(PLAIN_INTERVAL, announce)
        timer.daemon = True
        if PLAIN_INTERVAL <= 0:
            announce()
        else:
            timer.start()
        try:
            yield
        finally:
            timer.cancel()
        if PLAIN_INTERVAL <= 0 or timer.finished.is_set() and time.monotonic() - began >= PLAIN_INTERVAL:
            console.print(f"{label}: done in {time.monotonic() - began:.1f} s", markup=False, highlight=False)

    def start(self, total_images: int, steps: int) -> None:
        self._start_bars("images", total_images, steps)

    def _start_bars(self, label: str, total: int, steps: int, completed: int = 0, failures: bool = False) -> None:
        """An overall bar (ETA moving with every step, failure count if asked) above the step bar (it/s).

        Terminals only; elsewhere step() prints a plain progress line now and then.
        """
        self.label, self.total, self.done, self.first_done = label, total, float(completed), float(completed)
        self.started = self.last_plain = time.monotonic()
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

        extra = [TextColumn("[red]{task.fields[failed]}")] if failures else []
        self.progress = Progress(
            TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), *extra,
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self.images_task = self.progress.add_task(label, total=total, completed=completed, failed="", rate="")
        self.steps_task = self.progress.add_task("steps", total=steps, failed="", rate="")
        self.progress.start()

    def step(self, step: int, total: int) -> None:
        """One denoising step of the current pipeline call (`total` model calls in all)."""
        now = time.monotonic()
        if step <= 1 or self.call_started is None:
            self.call_started = now
        rate = (step - 1) / (now - self.call_started) if step > 1 and now > self.call_started else 0.0
        fraction = min(self.done + step / total, self.total) if total else self.done
        if self.progress is not None:
            self.progress.update(self.steps_task, completed=step, total=total, rate=f"{rate:.2f} it/s" if rate else "")
            self.progress.update(self.images_task, completed=fraction)  # the ETA moves within an image
        elif not console.quiet and now - self.last_plain >= PLAIN_INTERVAL:
            self.last_plain = now
            console.print(self._plain_line(step, total, rate, fraction, now), markup=False, highlight=False)

    def _plain_line(self, step: int, total: int, rate: float, fraction: float, now: float) -> str:
        """`progress: images 2/4, step 7/20, 3.1 it/s, eta 12 s` for logs (stderr not a terminal)."""
        made = fraction - self.first_done
        left = (self.total - fraction) * (now - self.started) / made if made > 0 else None
        eta = f"eta {left:.0f} s" if left is not None else "eta ?"
        speed = f", {rate:.2f} it/s" if rate else ""
        return (f"progress: {self.label} {min(int(self.done) + 1, self.total)}/{self.total}, step {step}/{total}"
                f"{speed}, {eta}")

    def _advance(self) -> None:
        self.done += 1
        self.call_started = None
        if self.progress is not None:
            self.progress.update(self.images_task, completed=self.done)
            self.progress.reset(self.steps_task)

    def image(self, record: dict[str, Any]) -> None:
        self.count += 1
        self._advance()
        self._emit(json_line({"type": "image", **record}) if self.as_json else record["path"])

    def _emit(self, line: str) -> None:
        """One line of data on stdout (above the bars when both share a terminal)."""
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


class BatchReporter(CliReporter):
    """A batch: an items bar (ETA, failures) above the step bar, then a summary table."""

    failed = 0

    def start(self, total_images: int, steps: int, completed: int = 0) -> None:
        self._start_bars("items", total_images, steps, completed, failures=True)

    def item(self, record: dict[str, Any]) -> None:
        if record["status"] == "done":
            self.image(record)
            return
        self.failed += 1
        self._advance()
        if self.progress is not None:
            self.progress.update(self.images_task, failed=f"{self.failed} failed")
        source = f", input {record['input']}" if record.get("input") else ""
        warning(f"item {record['item']} (line {record['line']}{source}, seed {record['seed']}) failed: "
                f"{record['error']}")
        if self.as_json:
            self._emit(json_line(record))

    def batch_summary(self, stats: Any) -> None:
        """done / skipped / failed / images per second, as a table on stderr."""
        from rich.table import Table

        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        table = Table("done", "skipped", "failed", "total", "seconds", "images/s",
                      title="batch" + (f" process {stats.process}" if stats.process else "")
                      + (" (interrupted)" if stats.interrupted else ""), title_justify="left")
        table.add_row(str(stats.done), str(stats.skipped), str(stats.failed), str(stats.total),
                      f"{stats.seconds:.1f}", f"{stats.images_per_second:.2f}")
        console.print(table)
