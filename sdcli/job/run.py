"""One generation job end to end, the one-shot driver: plan -> load -> generate -> write.

The CLI builds the request and a Reporter; everything else happens here, in the
order DESIGN.md sets: all checks before any model loads (job.plan), weights and
add-ons (job.load), each image written the moment it is done (job.write).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

from sdcli.errors import RuntimeFailure
from sdcli.io.output import missing_folders, next_number, prepare_folder, remove_if_empty
from sdcli.job.load import ModelCache, load_job
from sdcli.job.plan import plan_job, recorded_request
from sdcli.job.write import OutputOptions, write_image
from sdcli.models.assets import AssetOptions
from sdcli.models.loaded import LoadedModel
from sdcli.models.runtime import RuntimeOptions
from sdcli.request.generation import GenerationRequest


class Reporter(Protocol):
    """What a job tells its user; the CLI renders it, tests record it."""

    def note(self, message: str) -> None: ...
    def start(self, total_images: int, steps: int) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def image(self, record: dict[str, Any]) -> None: ...


def stage(reporter: Any, label: str) -> Any:
    """The reporter's stage context (loading ...), if it shows stages."""
    show = getattr(reporter, "stage", None)
    return show(label) if show else nullcontext()


def run_job(request: GenerationRequest, runtime: RuntimeOptions, model_spec: str | None,
            output: OutputOptions, reporter: Reporter, loaded: LoadedModel | None = None,
            assets: AssetOptions | None = None) -> list[dict[str, Any]]:
    """Run a txt2img, img2img, inpaint or outpaint job; return one record per written image.

    The one-shot driver of the job pipeline: plan (every check, before any load) -> load
    -> generate -> write, each image written the moment it exists. `loaded` (a loaded model) may
    be passed in (tests) to skip loading; model_spec still names the model for metadata. `assets` are the
    models folder and add-on flags (LoRAs, embeddings, VAE).
    """
    # 1. Plan: everything checked and every name resolved before any model loads.
    show = getattr(reporter, "stage", None)
    plan = plan_job(request, runtime, model_spec, assets, reporter.note, output=output, stage=show,
                    check_files=loaded is None)

    # 2. Load: the model, its add-ons, the refiner and hires upscaler.
    job = load_job(plan, ModelCache(), reporter.note, stage=show, loaded=loaded)
    created = missing_folders(output.folder)
    folder = prepare_folder(output.folder)
    try:
        return _generate(job, plan, folder, output, reporter)
    except BaseException:  # refused or failed before its first image: no empty folder of ours left behind
        remove_if_empty(created)
        raise


def _generate(job: Any, plan: Any, folder: Path, output: OutputOptions, reporter: Reporter) -> list[dict[str, Any]]:
    """3. Generate, writing each image as soon as it exists."""
    request = recorded_request(plan).with_resolved_seed()
    reporter.start(request.total_images, request.steps_run)
    number = next_number(folder)
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    for item in job.generate(request, reporter.step):
        if item.failure:  # never written as a black image with exit 0
            failed.append(f"image {item.index} (seed {item.seed}): {item.failure}")
            reporter.note(failed[-1])
            continue
        record = write_image(item, folder, output.pattern, number + item.index, request, plan.model, plan.runtime,
                             fmt=output.format, quality=output.quality, assets=plan.extras.record())
        records.append(record)
        reporter.image(record)
    if failed:
        raise RuntimeFailure(failed[0] if len(failed) == 1 else
                             f"{len(failed)} of {request.total_images} images failed; first: {failed[0]}")
    return records
