"""One generation job end to end: validate -> model -> pipeline -> images -> files.

The CLI builds the inputs and a Reporter; everything else happens here, in the
order DESIGN.md sets: all checks before any model loads, each image written
the moment it is done.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from sdcli.conditioning.prompts import parse_prompt
from sdcli.controlnet.plan import plan_controlnets
from sdcli.errors import RuntimeFailure
from sdcli.io.output import check_folder, next_number, prepare_folder
from sdcli.job.write import OutputOptions, write_image
from sdcli.models.assets import AssetOptions, apply_assets, plan_assets
from sdcli.models.runtime import RuntimeOptions, validate_runtime
from sdcli.request.generation import GenerationRequest, validate

# JSON record fields for the add-ons' infotext keys.




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


DEMO_NOTE = ("no --model given: using sdcli's built-in tiny RANDOM-WEIGHT demo model; "
             "its images are noise. Pass --model or set SDCLI_MODEL for real pictures.")


def run_job(request: GenerationRequest, runtime: RuntimeOptions, model_spec: str | None,
            output: OutputOptions, reporter: Reporter, pipe: Any = None,
            assets: AssetOptions | None = None) -> list[dict[str, Any]]:
    """Run a txt2img, img2img, inpaint or outpaint job; return one record per written image.

    `pipe` may be passed in (tests, batch runs) to skip loading; model_spec still
    names the model for metadata. `assets` are the models folder and add-on flags
    (LoRAs, embeddings, VAE), all found and checked before the model loads.
    """
    from sdcli.io.images import prepare
    from sdcli.job.generate import run
    from sdcli.models import loader, resolve
    from sdcli.models.runtime import JobSize, detect_runtime

    # 1. Everything that can be checked without a model.
    choice = validate(request)
    validate_runtime(runtime)
    output.check()
    for warning in parse_prompt(request.prompt).warnings + parse_prompt(request.negative_prompt).warnings:
        reporter.note(f"prompt: {warning}")
    inputs = prepare(request)  # input images are untrusted: read and checked before any model loads
    assets = assets or AssetOptions()
    extras = plan_assets(assets, request.prompt, request.negative_prompt)
    for warning in extras.warnings:
        reporter.note(warning)
    control_plan = plan_controlnets(request.controlnets, assets.library(), assets.allow_pickle)
    for warning in control_plan.warnings() if control_plan else ():
        reporter.note(warning)
    hires_ref = resolve_hires_upscaler(request, assets)
    check_folder(output.folder)  # created only once there is something to write: refused runs leave nothing

    # 2. Model files, then the pipeline with the add-ons on it.
    remote = bool(model_spec) and "/" in model_spec and not Path(model_spec).expanduser().exists()  # may download
    with stage(reporter, f"fetching {model_spec} from the hub") if remote else nullcontext():
        model = resolve.resolve_model(model_spec, offline=runtime.offline, library=assets.library(),
                                      allow_pickle=assets.allow_pickle)
    refiner_ref = resolve_refiner(request.refiner, runtime.offline, assets.library())
    if refiner_ref is not None and pipe is None:
        loader.check_refiner(model, refiner_ref)
    if control_plan is not None and pipe is None:
        control_plan.check_model(loader.detect_ref(model).family)
    if model.is_demo:
        reporter.note(DEMO_NOTE)
    plan = detect_runtime(runtime, JobSize(*(inputs.size if inputs else (request.width, request.height)),
                                           request.batch_size))
    if pipe is None:
        with stage(reporter, f"loading model {model.name}"):
            pipe = loader.load_pipeline(model, plan)
    apply_assets(pipe, extras, assets, reporter.note)
    control = None
    if control_plan is not None:
        with stage(reporter, "loading ControlNet"):
            control = control_plan.load(pipe, assets.allow_pickle)
        request = replace(request, controlnets=control_plan.record_units())  # replay: absolute paths
    model_hash = resolve.model_hash(model.hash_path)
    refiner = load_refiner(refiner_ref, plan)
    if refiner_ref is not None:  # the replay record names the refiner as resolved, like the model
        request = replace(request, refiner=refiner_ref.source or request.refiner)
    hires_upscaler = load_hires_upscaler(hires_ref, assets, plan)
    if hires_ref is not None:  # ... and the hires upscaler (a file: its absolute path)
        request = replace(request, hires=replace(request.hires, upscaler=hires_ref.path or hires_ref.name))
    folder = prepare_folder(output.folder)

    # 3. Generate, writing each image as soon as it exists.
    request = request.with_resolved_seed()
    reporter.start(request.total_images, request.steps_run)
    number = next_number(folder)
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    for item in run(request, pipe, choice, model_name=model.name, model_hash=model_hash,
                    on_step=reporter.step, inputs=inputs, extra_params=extras.params(), refiner=refiner,
                    control=control, hires_upscaler=hires_upscaler):
        if item.failure:  # never written as a black image with exit 0
            failed.append(f"image {item.index} (seed {item.seed}): {item.failure}")
            reporter.note(failed[-1])
            continue
        record = write_image(item, folder, output.pattern, number + item.index, request, model, plan,
                             fmt=output.format, quality=output.quality, assets=extras.record())
        records.append(record)
        reporter.image(record)
    if failed:
        raise RuntimeFailure(failed[0] if len(failed) == 1 else
                             f"{len(failed)} of {request.total_images} images failed; first: {failed[0]}")
    return records


def resolve_refiner(spec: str | None, offline: bool, library: Any = None) -> Any:
    """--refiner resolved like --model (files checked, no weights loaded); errors name --refiner."""
    from sdcli.errors import SdcliError
    from sdcli.models import resolve

    if not spec:
        return None
    try:
        return resolve.resolve_model(spec, offline=offline, library=library)
    except SdcliError as exc:
        exc.args = (str(exc).replace("--model:", "--refiner:", 1),)
        raise


def resolve_hires_upscaler(request: GenerationRequest, assets: AssetOptions) -> Any:
    """--hires-upscaler resolved (a name, a file, or a name in the models folder's ESRGAN/), or None."""
    from sdcli.models.upscalers import resolve_upscaler

    if request.hires is None:
        return None
    return resolve_upscaler(request.hires.upscaler, "--hires-upscaler", assets.library(), assets.allow_pickle)


def load_hires_upscaler(ref: Any, assets: AssetOptions, plan: Any) -> Any:
    """The ready hires upscaler (a model file loaded on the job's device), or None."""
    from sdcli.models.upscalers import ready

    return None if ref is None else ready(ref, "--hires-upscaler", assets.allow_pickle, plan.device)


def load_refiner(ref: Any, plan: Any) -> Any:
    """The loaded --refiner (None without one), named for the infotext."""
    from sdcli.job.generate import RefinerModel
    from sdcli.models import loader, resolve

    if ref is None:
        return None
    return RefinerModel(loader.load_pipeline(ref, plan), ref.name, resolve.model_hash(ref.hash_path))








