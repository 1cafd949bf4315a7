"""The batch runner: validated prompt file -> one pipeline per model -> images + manifest.

Order of work (DESIGN.md): every line and model checked before any load; each
model loaded once, its units run in file order (a sampler change swaps only the
scheduler); each image written atomically the moment it exists and recorded in
the manifest. A failing item is recorded and the batch goes on.

Processes: under `accelerate launch` (or torchrun) accelerate's PartialState
gives this process's index; it runs the pipeline calls (a unit, or units joined
into one batch) whose number % processes equals it. Items are numbered and seeded
by their global index and every call's batch is the one-process run's, so the
union of all processes' files equals a one-process run, bit for bit.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from sdcli import __version__
from sdcli.batch import manifest
from sdcli.batch.calls import run_call as _run_unit
from sdcli.batch.parse import (
    BatchLine,
    BatchUnit,
    parse_file,
    plan_digest,
    plan_units,
    resolve_base_seed,
    total_items,
)
from sdcli.batch.plan import BatchOptions, group_units, join_units, largest_job, plan_lines, resolve_models
from sdcli.batch.process import GracefulStop, Shard, Stop, current_shard
from sdcli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, SdcliError, UsageError
from sdcli.io.output import next_number, prepare_folder, remove_stale_temps, render_name
from sdcli.job.load import ModelCache
from sdcli.job.plan import JobPlan, resolve_hires_upscaler, resolve_refiner
from sdcli.job.write import name_values
from sdcli.models.runtime import validate_runtime
from sdcli.request.generation import DEFAULTED, validate


@dataclass
class BatchStats:
    """What a batch (all processes, for the main one) did."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    folder: Path | None = None
    process: int = 0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """130 interrupted, 3 some items failed, else 0. Other processes than the main one report
        failures through the merged manifest only: a non-zero exit would make the launcher stop the group."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_PARTIAL if self.failed and self.process == 0 else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"type": "end", "total": self.total, "done": self.done, "skipped": self.skipped,
                "failed": self.failed, "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


class BatchReporter(Protocol):
    """What a batch tells its user: overall progress by item, steps within an image."""

    def note(self, message: str) -> None: ...
    def start(self, total_items: int, steps: int, completed: int = 0) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def item(self, record: dict[str, Any]) -> None: ...


@dataclass
class _Run:
    """Per-process state of one batch run."""

    options: BatchOptions
    reporter: BatchReporter
    shard: Shard
    folder: Path
    header: dict[str, Any]
    plan: Any
    writer: manifest.ManifestWriter
    stats: BatchStats
    stop: GracefulStop
    now: _dt.datetime = field(default_factory=_dt.datetime.now)
    plans: dict[int, JobPlan] = field(default_factory=dict)  # each line's plan (job.plan), by line number
    cache: ModelCache = field(default_factory=ModelCache)  # the model, refiners and hires upscalers, loaded once

    def job(self, unit: BatchUnit) -> JobPlan:
        """The job pipeline's plan of one unit: its line's, with the unit's seeds and batch size."""
        return replace(self.plans[unit.line], request=unit.request, choice=validate(unit.request))

    def record(self, unit: BatchUnit, index: int, seed: int, model: Any, *, path: str | None = None,
               error: str | None = None, seconds: float = 0.0, **extra: Any) -> None:
        """Append one item's record to the manifest and tell the user."""
        record = {"type": "item", "item": index, "line": unit.line, "seed": seed, "path": path,
                  "status": "failed" if error else "done", "error": error, "seconds": round(seconds, 3),
                  "prompt": unit.request.prompt, "model": model.name, "process": self.shard.index,
                  **_sources(unit.request), **extra}
        self.writer.append(record)
        if error:
            self.stats.failed += 1
        elif extra.get("recovered"):
            self.stats.skipped += 1
        else:
            self.stats.done += 1
        self.reporter.item(record)

    def expected_path(self, unit: BatchUnit, index: int, seed: int, sampler: str, model: Any,
                      size: tuple[int, int]) -> Path:
        request = unit.request
        values = name_values(request, number=self.header["base_number"] + index, seed=seed, index=index,
                             width=request.width or size[0], height=request.height or size[1],
                             sampler=sampler, model_name=model.name, now=self.now)
        return self.folder / (render_name(self.options.output.pattern, values) + self.options.output.suffix)


def run_batch(options: BatchOptions, reporter: BatchReporter,
              load: Callable[[Any, Any], Any] | None = None) -> BatchStats:
    """Run a prompt file; return the stats (the main process's cover every process).

    `load(model_ref, plan)` loads a model (default loader.load_model; tests
    inject a cached one). Raises UsageError before anything loads or is written
    if any line, model or option is bad.
    """
    from sdcli.models.runtime import detect_runtime

    # 1. Everything that can be checked without loading a model.
    validate_runtime(options.runtime)
    if not 1 <= options.group <= 64:
        raise UsageError(f"--group: {options.group} is out of range; use 1 (never group) to 64")
    options.output.check()
    lines = list(options.lines) or parse_file(options.file, options.fmt, options.defaults, options.model)
    models = resolve_models(lines, options)
    if options.defaults.refiner:  # the flags by themselves first, with their own messages
        resolve_refiner(options.defaults.refiner, options.runtime.offline, options.assets.library())
    if options.defaults.hires is not None:
        resolve_hires_upscaler(options.defaults, options.assets)
    plan = detect_runtime(options.runtime, largest_job(lines, options.group))
    plans = plan_lines(lines, options, models, plan, reporter)  # every line through the job's plan step
    # What the plan filled in: the family defaults and the text encoders found in the models folder (a folder
    # line's inputs share their line's plan: only these fields).
    lines = [replace(line, request=replace(line.request, **{k: getattr(plans[line.line].request, k)
                                                             for k in (*DEFAULTED, "text_encoders")}))
             for line in lines]
    options = replace(options, record=recorded_defaults(options.record, models.get(options.model)))
    base_seed = resolve_base_seed(options.seed, lines)
    shard = current_shard(plan.device)
    if shard.count > 1 and plan.device == "cuda":
        plan = replace(plan, device=shard.device)  # cuda:N, one GPU per process
    folder = prepare_folder(options.output.folder, clean=False)

    # 2. The run header (new or resumed) decided by the main process, shared by all.
    header = shard.share(_open_run(options, lines, base_seed, folder, shard) if shard.is_main else None)
    if "error" in header:
        raise UsageError(header["error"])
    # The pipeline calls in run order (by model; a model's units in file order, a line's --count batches and
    # consecutive lines joined), each run whole by one process: its batch, so its pixels, are a one-process run's.
    units = group_units(plan_units(lines, header["base_seed"]), options.group)
    model_calls, numbered = [], 0
    for group in _by_model(units, models, plans).values():
        calls = join_units(group, plans, options.group)
        model_calls.append([c for k, c in enumerate(calls, numbered) if k % shard.count == shard.index])
        numbered += len(calls)
    units = [unit for calls in model_calls for call in calls for unit in call]
    done = manifest.done_items(manifest.load(folder)[1]) if options.resume else {}
    stats = BatchStats(total=sum(u.request.batch_size for u in units), folder=folder, process=shard.index)
    stats.skipped = sum(1 for u in units for i in u.items if i in done)
    if shard.is_main and options.resume:
        reporter.note(f"resuming batch: {len(done)} item(s) already done, base seed {header['base_seed']}")
    elif shard.is_main and options.seed in (None, -1):
        reporter.note(f"base seed {header['base_seed']} (item i gets seed {header['base_seed']} + i)")

    # 3. One pipeline per model; its units in file order.
    target = folder / manifest.MANIFEST if shard.count == 1 else manifest.part_path(folder, shard.index)
    started = time.monotonic()
    with manifest.ManifestWriter(target) as writer, GracefulStop(reporter) as stop:
        run = _Run(options, reporter, shard, folder, header, plan, writer, stats, stop,
                   _dt.datetime.fromisoformat(header["started"]), plans, cache=ModelCache(load))
        reporter.start(stats.total, units[0].request.step_count if units else 1, completed=stats.skipped)
        try:
            for calls in model_calls:
                _run_group(run, calls, models, done)
        except (KeyboardInterrupt, Stop):
            stats.interrupted = True
        stats.seconds = time.monotonic() - started
        if shard.count > 1:
            writer.append({**stats.as_dict(), "process": shard.index})

    # 4. Several processes: the main one waits for every part, merges, and sums up.
    if shard.count > 1 and shard.is_main and not stats.interrupted:
        ends = manifest.wait_for_parts(folder, shard.count)
        manifest.merge_parts(folder)
        stats = BatchStats(
            total=sum(e["total"] for e in ends), done=sum(e["done"] for e in ends),
            skipped=sum(e["skipped"] for e in ends), failed=sum(e["failed"] for e in ends),
            seconds=time.monotonic() - started, interrupted=any(e["interrupted"] for e in ends), folder=folder)
    return stats


def recorded_defaults(record: dict[str, Any], model: Any) -> dict[str, Any]:
    """The manifest's options with the unset (None) cfg scale, sampler and schedule as the batch's --model
    resolves them (its family's defaults), as manifests have always recorded them. A --resume applies them to
    every line: a line naming a model of another family (sd_model) then gets these, not its own family's."""
    from sdcli.job.family_rules import family_of
    from sdcli.request.generation import DEFAULTED, REQUEST_DEFAULTS

    unset = [k for k in DEFAULTED if k in record and record[k] is None]
    if not unset:
        return record
    family = family_of(model) if model is not None else None
    defaults = {**REQUEST_DEFAULTS, **(family.defaults if family is not None else {})}
    return {k: defaults.get(k) if k in unset else v for k, v in record.items()}


def _open_run(options: BatchOptions, lines: list[BatchLine], base_seed: int, folder: Path,
              shard: Shard) -> dict[str, Any]:
    """Main process: clear a killed run's leftovers and start or continue the manifest."""
    removed = remove_stale_temps(folder)
    header = {
        "type": "batch", "version": __version__, "file": str(options.file),
        "digest": plan_digest(lines, options.output.pattern), "items": total_items(lines),
        "base_seed": base_seed, "seed_given": options.seed not in (None, -1),
        "base_number": next_number(folder), "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "processes": shard.count, "removed_temp_files": removed,
        **({"source": options.source} if options.source else {}),
        **({"options": options.record} if options.record else {}),
    }
    try:
        if options.resume:
            manifest.merge_parts(folder)
        return manifest.start(folder, header, options.resume)
    except UsageError as exc:
        return {"error": str(exc)}


def _by_model(units: list[BatchUnit], models: dict[str | None, Any],
              plans: dict[int, JobPlan]) -> dict[tuple[Any, ...], list[BatchUnit]]:
    """Units grouped by the model they load (its folder or file, and how a line stores it: --low-bits, --quantize),
    groups in order of first use, units in file order."""
    groups: dict[tuple[Any, ...], list[BatchUnit]] = {}
    for unit in units:
        ref = _model_of(unit, models, plans)
        groups.setdefault((ref.path, ref.storage, ref.storage_encoders), []).append(unit)
    return groups


def _model_of(unit: BatchUnit, models: dict[str | None, Any], plans: dict[int, JobPlan]) -> Any:
    """The model a unit loads: its line's planned one (with its storage), else the resolved --model/sd_model."""
    plan = plans.get(unit.line)
    return plan.model if plan is not None else models[unit.model]


def _run_group(run: _Run, calls: list[list[BatchUnit]], models: dict[str | None, Any], done: dict[int, Any]) -> None:
    """Load one model once and run its calls; a failure fails the items concerned, not the batch. A call runs
    whole while any of its items is not done (its images as in the uninterrupted run)."""
    todo = [call for call in calls if any(i not in done for unit in call for i in unit.items)]
    if not todo:
        return
    model = _model_of(todo[0][0], models, run.plans)
    try:
        loaded = run.cache.model(model, run.plan, getattr(run.reporter, "stage", None))
    except Exception as exc:  # a model that fails to load (out of memory ...) fails its items only
        message = str(exc) if isinstance(exc, SdcliError) else f"{type(exc).__name__}: {exc}"
        for unit in (unit for call in todo for unit in call):
            for index, seed in zip(unit.items, unit.request.seeds(), strict=True):
                if index not in done:
                    run.record(unit, index, seed, model, error=message)
        return
    for call in todo:
        _run_unit(run, call, loaded, model, done)
    del loaded
    run.cache.drop()


def _sources(request: Any) -> dict[str, str]:
    """The input image (and mask) an item was made from, for its record."""
    sources = {"input": request.input_image} if request.input_image is not None else {}
    if request.inpaint is not None and request.inpaint.mask:
        sources["mask"] = request.inpaint.mask
    return sources
