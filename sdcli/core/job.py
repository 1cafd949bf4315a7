"""One generation job end to end: validate -> model -> pipeline -> images -> files.

The CLI builds the inputs and a Reporter; everything else happens here, in the
order DESIGN.md sets: all checks before any model loads, each image written
the moment it is done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from sdcli import __version__
from sdcli.conditioning.prompts import parse_prompt, plain_text
from sdcli.core.output import DEFAULT_PATTERN, check_pattern, next_number, prepare_folder, render_name
from sdcli.core.request import DIRECTIONS, GenerationRequest, validate
from sdcli.models.runtime import RuntimeOptions, validate_runtime


@dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written."""

    folder: Path = Path("outputs")
    pattern: str = DEFAULT_PATTERN


class Reporter(Protocol):
    """What a job tells its user; the CLI renders it, tests record it."""

    def note(self, message: str) -> None: ...
    def start(self, total_images: int, steps: int) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def image(self, record: dict[str, Any]) -> None: ...


DEMO_NOTE = ("no --model given: using sdcli's built-in tiny RANDOM-WEIGHT demo model; "
             "its images are noise. Pass --model or set SDCLI_MODEL for real pictures.")


def run_job(request: GenerationRequest, runtime: RuntimeOptions, model_spec: str | None,
            output: OutputOptions, reporter: Reporter, pipe: Any = None) -> list[dict[str, Any]]:
    """Run a txt2img, img2img, inpaint or outpaint job; return one record per written image.

    `pipe` may be passed in (tests, batch runs) to skip loading; model_spec still
    names the model for metadata.
    """
    from sdcli.core.generate import run
    from sdcli.core.images import prepare
    from sdcli.models import loader, resolve
    from sdcli.models.runtime import JobSize, detect_runtime

    # 1. Everything that can be checked without a model.
    choice = validate(request)
    validate_runtime(runtime)
    check_pattern(output.pattern)
    for warning in parse_prompt(request.prompt).warnings + parse_prompt(request.negative_prompt).warnings:
        reporter.note(f"prompt: {warning}")
    inputs = prepare(request)  # input images are untrusted: read and checked before any model loads
    folder = prepare_folder(output.folder)

    # 2. Model files, then the pipeline.
    model = resolve.resolve_model(model_spec, offline=runtime.offline)
    if model.is_demo:
        reporter.note(DEMO_NOTE)
    plan = detect_runtime(runtime, JobSize(*(inputs.size if inputs else (request.width, request.height)),
                                           request.batch_size))
    if pipe is None:
        pipe = loader.load_pipeline(model, plan)
    model_hash = resolve.model_hash(model.path)

    # 3. Generate, writing each image as soon as it exists.
    request = request.with_resolved_seed()
    reporter.start(request.total_images, request.steps_run)
    number = next_number(folder)
    records = []
    for item in run(request, pipe, choice, model_name=model.name, model_hash=model_hash,
                    on_step=reporter.step, inputs=inputs):
        record = write_image(item, folder, output.pattern, number + item.index, request, model, plan)
        records.append(record)
        reporter.image(record)
    return records


def replay_record(item, request: GenerationRequest, model) -> dict[str, Any]:
    """What `sdcli replay` needs to make this one image again (stored in the PNG)."""
    single = replace(request, seed=item.seed, subseed=item.subseed, width=item.width, height=item.height,
                     batch_size=1, count=1)
    return {"sdcli": __version__, "model": model.source, "request": asdict(single)}


def name_values(request: GenerationRequest, *, number: int, seed: int, index: int, width: int, height: int,
                sampler: str, model_name: str, now: Any = None) -> dict[str, Any]:
    """The values file name patterns draw on (see output.FIELDS); `now` pins [date]/[datetime]."""
    values = {
        "num": number, "seed": seed, "steps": request.steps, "cfg_scale": request.cfg_scale,
        "sampler": sampler, "width": width, "height": height,
        "prompt_plain": plain_text(request.prompt), "model": model_name, "index": index,
    }
    if now is not None:
        values["now"] = now
    return values


def write_image(item, folder: Path, pattern: str, number: int, request: GenerationRequest,
                model, plan, now: Any = None) -> dict[str, Any]:
    """Write one PNG with its infotext and replay record; return its JSON record."""
    from sdcli.core.metadata import png_info
    from sdcli.core.output import write_atomic

    model_name = model.name
    values = name_values(request, number=number, seed=item.seed, index=item.index, width=item.width,
                         height=item.height, sampler=item.params["Sampler"], model_name=model_name, now=now)
    info = png_info(item.infotext, replay_record(item, request, model))
    path = write_atomic(folder, render_name(pattern, values), ".png",
                        lambda tmp: item.image.save(tmp, format="PNG", pnginfo=info))
    return {
        "path": str(path),
        "mode": request.mode,
        "index": item.index,
        "seed": item.seed,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "sampler": item.params["Sampler"],
        "schedule": item.params["Schedule type"],
        "width": item.width,
        "height": item.height,
        "clip_skip": request.clip_skip,
        "subseed": item.subseed,
        "subseed_strength": request.subseed_strength,
        "batch_size": request.batch_size,
        "count": request.count,
        "model": model_name,
        "model_hash": item.params["Model hash"],
        "device": plan.device,
        "dtype": plan.dtype,
        **_input_record(request),
        "infotext": item.infotext,
    }


def _input_record(request: GenerationRequest) -> dict[str, Any]:
    """JSON fields for the input image and mask settings, when there are any."""
    record: dict[str, Any] = {}
    if request.init is not None:
        record.update(image=request.init.image, strength=request.init.strength, steps_run=request.steps_run)
    if request.inpaint is not None:
        record.update(mask=request.inpaint.mask, mask_blur=request.inpaint.mask_blur,
                      masked_content=request.inpaint.masked_content)
        if request.mode == "inpaint":
            record.update(inpaint_area=request.inpaint.area, padding=request.inpaint.padding)
    if request.outpaint is not None:
        record.update(dict(zip(DIRECTIONS, request.outpaint.pixels, strict=True)),
                      fill=request.outpaint.fill)
    return record
