"""A batch's pipeline calls: each unit (a line's images, or a run of its --count batches), or consecutive
units of several lines joined into one batch (plan.join_units), through the job pipeline's load, generate
and write steps, each image written and recorded in the manifest as its own line's the moment it exists."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from sdcli.batch.parse import BatchUnit
from sdcli.batch.process import Stop
from sdcli.errors import SdcliError
from sdcli.job.load import ModelCache, load_job
from sdcli.job.plan import JobPlan, recorded_request
from sdcli.job.write import write_image
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import validate


class CallRun(Protocol):
    """What a call needs of its batch run (runner._Run): options, output, the loaded models, the manifest."""

    options: Any  # batch.plan.BatchOptions
    reporter: Any  # runner.BatchReporter
    folder: Path
    header: dict[str, Any]
    plan: Any  # models.runtime.RuntimePlan
    stop: Any  # process.GracefulStop
    now: _dt.datetime
    cache: ModelCache

    def job(self, unit: BatchUnit) -> JobPlan: ...
    def record(self, unit: BatchUnit, index: int, seed: int, model: Any, *, path: str | None = None,
               error: str | None = None, seconds: float = 0.0, **extra: Any) -> None: ...
    def expected_path(self, unit: BatchUnit, index: int, seed: int, sampler: str, model: Any,
                      size: tuple[int, int]) -> Path: ...


def run_call(run: CallRun, units: list[BatchUnit], loaded: LoadedModel, model: Any, done: dict[int, Any]) -> None:
    """One pipeline call: one unit, or consecutive units of several lines joined into one batch (plan.join_units).

    A joined call makes each unit's images with its own seeds, prompts and infotext, and writes and records
    those not done yet as run_unit would. It makes all its images even when some are done (a resumed batch):
    the batch, and so every pixel, is the uninterrupted run's. Where the job cannot run joined (a model that
    sdcli's loop does not sample: job.generate.groupable) its units run one by one; if the joined call fails,
    its units not yet written run again one by one, so that a failing line fails only its own items.
    """
    if len(units) == 1:
        run_unit(run, units[0], loaded, model, done)
        return
    # 1. Each unit's items still to make (a killed run's files recovered).
    todos = [pending(run, unit, loaded, model, done) for unit in units]
    seen = {**done, **{index: True for unit, todo in zip(units, todos, strict=True) for index in unit.items
                       if index not in todo}}
    jobs = [run.job(unit) for unit in units]
    started, written = time.monotonic(), {}
    try:
        loaded_job = load_job(jobs[0], run.cache, run.reporter.note, loaded=loaded)
        requests = [recorded_request(job) for job in jobs]
        if not loaded_job.groupable(requests[0]):
            for unit, todo in zip(units, todos, strict=True):
                if todo:
                    run_unit(run, unit, loaded, model, seen)
            return
        # 2. One batch of every unit's images; image k of the batch is image `offset` of its unit.
        owners = [(unit, offset, todo, request, job)
                  for unit, todo, request, job in zip(units, todos, requests, jobs, strict=True)
                  for offset in range(request.batch_size)]
        share = None
        for image in loaded_job.generate(requests[0], run.reporter.step, group=requests):
            began = time.monotonic()
            if share is None:
                share = (began - started) / len(owners)
            unit, offset, todo, request, job = owners[image.index]
            index = unit.first + offset
            if (seed := todo.get(index)) is None:
                continue
            keep(run, unit, replace(image, index=index), seed, request, job, model, share, began)
            written[index] = todo.pop(index)
            if run.stop.requested:
                raise Stop
    except (KeyboardInterrupt, Stop):
        raise
    except Exception as exc:  # the joined call failed: its units again one by one, each failing only itself
        lines = ", ".join(dict.fromkeys(str(unit.line) for unit, todo in zip(units, todos, strict=True) if todo))
        run.reporter.note(f"{run.options.file}: lines {lines} failed as one batch ({_message(exc)}); "
                          "running them one by one")
        for unit, todo in zip(units, todos, strict=True):
            if todo:
                run_unit(run, unit, loaded, model, {**seen, **written})


def pending(run: CallRun, unit: BatchUnit, loaded: LoadedModel, model: Any, done: dict[int, Any]) -> dict[int, int]:
    """The unit's items still to make (index -> seed); a file a killed run wrote before its record is recorded."""
    request = unit.request
    choice = validate(request)
    size = (loaded.native_size,) * 2
    todo = {}
    for index, seed in zip(unit.items, request.seeds(), strict=True):
        if index in done:
            continue
        found = run.expected_path(unit, index, seed, choice.sampler.name, model, size)
        if is_this_item(found, request.prompt, seed):  # written by a killed run before its record
            run.record(unit, index, seed, model, path=str(found), recovered=True)
        else:
            todo[index] = seed
    return todo


def run_unit(run: CallRun, unit: BatchUnit, loaded: LoadedModel, model: Any, done: dict[int, Any]) -> None:
    """One pipeline call; writes each of its images not already done."""
    todo = pending(run, unit, loaded, model, done)
    if not todo:
        return
    started = time.monotonic()
    share = None  # each image's part of the one pipeline call that makes the unit's batch_size images
    try:
        # The job pipeline's load and generate steps: LoRAs/embeddings/VAE change on the loaded model
        # (no reload of the base model); ControlNets, refiners and hires upscalers load once per run.
        job = run.job(unit)
        loaded_job = load_job(job, run.cache, run.reporter.note, loaded=loaded)
        request = recorded_request(job)
        for image in loaded_job.generate(request, run.reporter.step):
            began = time.monotonic()
            if share is None:
                share = (began - started) / request.batch_size
            index = unit.first + image.index
            seed = todo.get(index)
            if seed is None:
                continue
            keep(run, unit, replace(image, index=index), seed, request, job, model, share, began)
            del todo[index]
            if run.stop.requested:
                raise Stop
    except (KeyboardInterrupt, Stop):
        raise
    except Exception as exc:  # out of memory, a late UsageError, a write failure: fail these items, go on
        for index, seed in todo.items():
            run.record(unit, index, seed, model, error=_message(exc),
                       seconds=(time.monotonic() - started) / max(len(todo), 1))


def keep(run: CallRun, unit: BatchUnit, image: Any, seed: int, request: Any, job: JobPlan, model: Any,
         share: float, began: float) -> None:
    """Write one finished image (image.index: its item) and record it with its seconds (its `share` of the call,
    plus its write since `began`); one whose pixels failed is recorded only."""
    if image.failure:
        run.record(unit, image.index, seed, model, seconds=share, error=image.failure)
        return
    written = write_image(image, run.folder, run.options.output.pattern, run.header["base_number"] + image.index,
                          request, model, run.plan, now=run.now, fmt=run.options.output.format,
                          quality=run.options.output.quality, assets=job.extras.record())
    run.record(unit, image.index, seed, model, path=written["path"], seconds=share + time.monotonic() - began)


def _message(exc: Exception) -> str:
    """An exception's first line (with its type unless it is sdcli's own error)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return first if isinstance(exc, SdcliError) else f"{type(exc).__name__}: {first}"  # a corrupt input ...


def is_this_item(path: Path, prompt: str, seed: int) -> bool:
    """Whether `path` is an image sdcli wrote for this prompt and seed."""
    from sdcli.io.metadata import parse_infotext, read_infotext

    if not path.is_file():
        return False
    try:
        text = read_infotext(path)
    except Exception:  # not an image, or a broken one: not ours
        return False
    if not text:
        return False
    found_prompt, _, params = parse_infotext(text)
    return found_prompt == prompt and params.get("Seed") == str(seed)
