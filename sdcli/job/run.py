"""One generation job end to end: validate -> model -> pipeline -> images -> files.

The CLI builds the inputs and a Reporter; everything else happens here, in the
order DESIGN.md sets: all checks before any model loads, each image written
the moment it is done.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from sdcli import __version__
from sdcli.conditioning.prompts import parse_prompt, plain_text
from sdcli.controlnet.plan import plan_controlnets
from sdcli.errors import RuntimeFailure, UsageError
from sdcli.io.output import DEFAULT_PATTERN, check_folder, check_pattern, next_number, prepare_folder, render_name
from sdcli.models.assets import AssetOptions, apply_assets, plan_assets
from sdcli.models.loaded import LoadedModel
from sdcli.models.runtime import RuntimeOptions, validate_runtime
from sdcli.request.generation import DIRECTIONS, GenerationRequest, validate

# JSON record fields for the add-ons' infotext keys.
ASSET_KEYS = {"vae": "VAE", "vae_hash": "VAE hash", "lora_hashes": "Lora hashes", "ti_hashes": "TI hashes"}


@dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written."""

    folder: Path = Path("outputs")
    pattern: str = DEFAULT_PATTERN
    format: str = "png"  # a key of metadata.IMAGE_FORMATS
    quality: int = 90  # JPEG/WebP quality, 1-100

    def check(self) -> None:
        """Name pattern, format and quality, before any work."""
        from sdcli.io.metadata import IMAGE_FORMATS

        check_pattern(self.pattern)
        if self.format not in IMAGE_FORMATS:
            raise UsageError(f"--format: unknown format {self.format!r}; choose from {', '.join(IMAGE_FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality: {self.quality} is out of range; use 1 to 100")

    @property
    def suffix(self) -> str:
        from sdcli.io.metadata import IMAGE_FORMATS

        return IMAGE_FORMATS[self.format][0]


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
            output: OutputOptions, reporter: Reporter, loaded: LoadedModel | None = None,
            assets: AssetOptions | None = None) -> list[dict[str, Any]]:
    """Run a txt2img, img2img, inpaint or outpaint job; return one record per written image.

    `loaded` (a loaded model) may be passed in (tests, batch runs) to skip loading; model_spec still
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
    if refiner_ref is not None and loaded is None:
        loader.check_refiner(model, refiner_ref)
    if control_plan is not None and loaded is None:
        control_plan.check_model(loader.detect_ref(model).family)
    if model.is_demo:
        reporter.note(DEMO_NOTE)
    plan = detect_runtime(runtime, JobSize(*(inputs.size if inputs else (request.width, request.height)),
                                           request.batch_size))
    if loaded is None:
        with stage(reporter, f"loading model {model.name}"):
            loaded = loader.load_model(model, plan)
    apply_assets(loaded, extras, assets, reporter.note)
    control = None
    if control_plan is not None:
        with stage(reporter, "loading ControlNet"):
            control = control_plan.load(loaded, assets.allow_pickle)
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
    for item in run(request, loaded, choice, model_name=model.name, model_hash=model_hash,
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


def load_refiner(ref: Any, plan: Any) -> LoadedModel | None:
    """The loaded --refiner (None without one), named for the infotext."""
    from sdcli.models import loader, resolve

    if ref is None:
        return None
    refiner = loader.load_model(ref, plan)
    refiner.name, refiner.hash = ref.name, resolve.model_hash(ref.hash_path)
    return refiner


def replay_record(item, request: GenerationRequest, model, assets: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `sdcli replay` needs to make this one image again (stored in the PNG)."""
    single = replace(request, seed=item.seed, subseed=item.subseed, width=item.width, height=item.height,
                     batch_size=1, count=1)
    record = {"sdcli": __version__, "model": model.source, "request": asdict(single)}
    if assets and any(assets.values()):
        record["assets"] = assets  # flag LoRAs, embeddings, VAE (tag LoRAs are in the prompt)
    return record


def name_values(request: GenerationRequest, *, number: int, seed: int, index: int, width: int, height: int,
                sampler: str, model_name: str, now: Any = None) -> dict[str, Any]:
    """The values file name patterns draw on (see output.FIELDS); `now` pins [date]/[datetime]."""
    values = {
        "num": number, "seed": seed, "steps": request.steps, "cfg_scale": request.cfg_scale,
        "sampler": sampler, "width": width, "height": height,
        "prompt_plain": plain_text(request.prompt), "model": model_name, "index": index,
        "input": Path(request.init.image).stem if request.init is not None else None,
    }
    if now is not None:
        values["now"] = now
    return values


def write_image(item, folder: Path, pattern: str, number: int, request: GenerationRequest,
                model, plan, now: Any = None, *, fmt: str = "png", quality: int = 90,
                assets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one image (PNG, JPEG or WebP) with its infotext and replay record; return its JSON record."""
    from sdcli.io.metadata import IMAGE_FORMATS, save_image
    from sdcli.io.output import write_atomic

    model_name = model.name
    values = name_values(request, number=number, seed=item.seed, index=item.index, width=item.width,
                         height=item.height, sampler=item.params["Sampler"], model_name=model_name, now=now)
    record = replay_record(item, request, model, assets)
    path = write_atomic(folder, render_name(pattern, values), IMAGE_FORMATS[fmt][0],
                        lambda tmp: save_image(item.image, tmp, fmt, quality, item.infotext, record))
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
        **{key: item.params[param] for key, param in ASSET_KEYS.items() if item.params.get(param)},
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
    if request.hires is not None:
        record["hires"] = asdict(request.hires)
    if request.outpaint is not None:
        record.update(dict(zip(DIRECTIONS, request.outpaint.pixels, strict=True)),
                      fill=request.outpaint.fill)
    if request.controlnets:
        record["controlnets"] = [asdict(unit) for unit in request.controlnets]
    return record
