"""A batch's pipeline calls: each unit (a line's images, or a run of its --count batches) through the job
pipeline's load, generate and write steps, its images recorded in the manifest as they are written."""

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


def run_unit(run: CallRun, unit: BatchUnit, loaded: LoadedModel, model: Any, done: dict[int, Any]) -> None:
    """One pipeline call; writes each of its images not already done."""
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
            if image.failure:
                run.record(unit, index, seed, model, seconds=share, error=image.failure)
            else:
                written = write_image(replace(image, index=index), run.folder, run.options.output.pattern,
                                      run.header["base_number"] + index, request, model, run.plan, now=run.now,
                                      fmt=run.options.output.format, quality=run.options.output.quality,
                                      assets=job.extras.record())
                run.record(unit, index, seed, model, path=written["path"],
                           seconds=share + time.monotonic() - began)
            del todo[index]
            if run.stop.requested:
                raise Stop
    except (KeyboardInterrupt, Stop):
        raise
    except Exception as exc:  # out of memory, a late UsageError, a write failure: fail these items, go on
        first = str(exc).splitlines()[0] if str(exc) else ""
        message = first if isinstance(exc, SdcliError) else f"{type(exc).__name__}: {first}"  # a corrupt input ...
        for index, seed in todo.items():
            run.record(unit, index, seed, model, error=message,
                       seconds=(time.monotonic() - started) / max(len(todo), 1))


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
