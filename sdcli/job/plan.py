"""The plan step of a job: every check and every name resolved, before any weights load.

plan_job() is pure with respect to models: it reads flags, input images (untrusted, checked
here), prompt syntax, file headers and folder listings, never weights. Every entry point
(one-shot commands, prompt files, X/Y/Z, folders, the server, the --server client) plans
through it, so a bad value is refused the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from sdcli.conditioning.prompts import bad_weight, parse_prompt
from sdcli.controlnet.plan import ControlPlan, plan_controlnets
from sdcli.errors import SdcliError, UsageError
from sdcli.io.images import PreparedInputs
from sdcli.io.output import check_folder
from sdcli.job.family_rules import check_control_input, check_edit, family_of, for_family, storage_flag
from sdcli.job.write import OutputOptions
from sdcli.models.assets import AssetOptions, AssetPlan, plan_assets, short_hash
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import RuntimeOptions, RuntimePlan, validate_runtime
from sdcli.request.generation import GenerationRequest, validate
from sdcli.request.storage import AUTOMATIC, storage_of
from sdcli.sampling.samplers import DEFAULT_SAMPLER, SamplerChoice, sampler_row

Notes = Callable[[str], None]
DEMO_NOTE = ("no --model given: using sdcli's built-in tiny RANDOM-WEIGHT demo model; "
             "its images are noise. Pass --model or set SDCLI_MODEL for real pictures.")


@dataclass(frozen=True)
class JobPlan:
    """A checked job: the request, its sampler, inputs, add-ons and every model it names, resolved."""

    request: GenerationRequest
    choice: SamplerChoice
    model: ModelRef
    runtime: RuntimePlan
    assets: AssetOptions
    extras: AssetPlan  # LoRAs, embeddings, VAE of the prompt and flags
    inputs: PreparedInputs | None = None
    control: ControlPlan | None = None
    refiner: ModelRef | None = None
    hires_upscaler: Any = None  # models.upscalers.UpscalerRef of request.hires
    faces: Any = None  # models.faces.FaceRef of --restore-faces


class Names(Protocol):
    """How a job's model names become files: the CLI's rules (paths, hub ids, the models folder), or a
    server's (only the models it serves and its models folder, never a path)."""

    def model(self, spec: str | None) -> ModelRef: ...
    def refiner(self, spec: str) -> ModelRef: ...
    def hires_upscaler(self, spec: str, assets: AssetOptions) -> Any: ...


@dataclass(frozen=True)
class LocalNames:
    """The CLI's rules: a path, a hub id (may download unless offline) or a name in the models folder."""

    offline: bool
    assets: AssetOptions
    stage: Callable[[str], Any] | None = None

    def model(self, spec: str | None) -> ModelRef:
        from sdcli.models import resolve

        remote = bool(spec) and "/" in spec and not Path(spec).expanduser().exists()  # may download
        with self.stage(f"fetching {spec} from the hub") if remote and self.stage else nullcontext():
            return resolve.resolve_model(spec, offline=self.offline, library=self.assets.library(),
                                         allow_pickle=self.assets.allow_pickle)

    def refiner(self, spec: str) -> ModelRef:
        ref = resolve_refiner(spec, self.offline, self.assets.library())
        assert ref is not None
        return ref

    def hires_upscaler(self, spec: str, assets: AssetOptions) -> Any:
        from sdcli.models.upscalers import resolve_upscaler

        return resolve_upscaler(spec, "--hires-upscaler", assets.library(), assets.allow_pickle)


def check_request(request: GenerationRequest, runtime: RuntimeOptions, notes: Notes,
                  output: OutputOptions | None = None) -> SamplerChoice:
    """The request's own checks (flags, ranges, output options, prompt syntax warnings): no files, no models."""
    choice = validate(request)
    validate_runtime(runtime)
    if output is not None:
        output.check()
    for warning in parse_prompt(request.prompt).warnings + parse_prompt(request.negative_prompt).warnings:
        notes(f"prompt: {warning}")
    hires = request.hires
    for name, text in (("prompt", request.prompt), ("--negative-prompt", request.negative_prompt),
                       ("--hires-prompt", hires and hires.prompt),
                       ("--hires-negative-prompt", hires and hires.negative_prompt)):
        if text and request.emphasis != "none" and (weight := bad_weight(text)):  # none: the text as it is
            raise UsageError(f"{name}: the weight {weight} is not a number")
    if choice.unused_schedule_note:
        notes(choice.unused_schedule_note)
    return choice


@dataclass
class PlanMemo:
    """What planning many jobs (a prompt file's lines) works out once: each value's plan by key. A failed
    lookup is not kept, so every job that names a bad value is refused by its own line."""

    values: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def once(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if key not in self.values:
            self.values[key] = make()
        return self.values[key]


def plan_job(request: GenerationRequest, runtime: RuntimeOptions, model_spec: str | None,
             assets: AssetOptions | None, notes: Notes, *, output: OutputOptions | None = None,
             stage: Callable[[str], Any] | None = None, check_files: bool = True, names: Names | None = None,
             placement: RuntimePlan | None = None, prepare_inputs: bool = True,
             memo: PlanMemo | None = None, fallback: Mapping[str, Any] | None = None,
             ignore_unused: bool = False) -> JobPlan:
    """Check everything a job needs and resolve every name it gives; load no weights.

    `names` turns model names into files (default: the CLI's LocalNames); `placement` is a
    driver's fixed device plan (default: detected for this job's size). `check_files` False
    skips the header checks that compare model files with each other (a caller that brings its
    own loaded model, as tests do). `prepare_inputs` False leaves the input images to the generate
    step (a prompt file's lines, whose files the parser has checked). `memo` shares the work of
    many jobs (notes come once per value). Unset settings (None: cfg scale, sampler, schedule, distilled
    CFG) take the model family's defaults (Family.defaults), else the entry point's `fallback` (the WebUI
    API's), else sdcli's (request.generation.REQUEST_DEFAULTS); settings the family does not take
    (--distilled-cfg on an SD model) are refused, or dropped with `ignore_unused` (a WebUI API payload, as
    Forge ignores them). Raises UsageError/ModelError.
    """
    from sdcli.families import pipeline_class
    from sdcli.io.images import open_image, prepare
    from sdcli.models import loader
    from sdcli.models.flux_parts import check_vae_channels, plan_model_parts
    from sdcli.models.runtime import JobSize, detect_runtime

    memo = memo or PlanMemo()
    once = memo.once
    # 1. Everything that can be checked without a model.
    choice = check_request(request, runtime, notes, output)
    inputs = prepare(request) if prepare_inputs else None  # untrusted input images: read before any load
    if prepare_inputs:
        for reference in request.references:  # an edit's reference images: read (and dropped) likewise
            open_image(Path(reference), "--image")
    assets = assets or AssetOptions()
    extras = once(("assets", id(assets), request.prompt, request.negative_prompt),
                  lambda: _noted(plan_assets(assets, request.prompt, request.negative_prompt), notes))
    control = once(("control", id(assets), request.controlnets), lambda: _noted(
        plan_controlnets(request.controlnets, assets.library(), assets.allow_pickle), notes))
    names = names or LocalNames(runtime.offline, assets, stage)
    hires_upscaler = once(("hires", id(assets), request.hires.upscaler),
                          lambda: names.hires_upscaler(request.hires.upscaler, assets)) if request.hires else None
    faces = once(("faces", id(assets), request.face_restorer, request.code_former_weight),
                 lambda: resolve_faces(request, assets)) if request.face_restorer else None
    if output is not None:
        check_folder(output.folder)  # created only once there is something to write: refused runs leave nothing

    # 2. Model files: found and checked against each other from their headers.
    model = once(("model", model_spec), lambda: names.model(model_spec))
    family = once(("detect", model.path), lambda: family_of(model))
    check_edit(request, family)  # before the refiner and ControlNet checks: an edit takes neither
    refiner = once(("refiner", request.refiner), lambda: names.refiner(request.refiner)) if request.refiner else None
    if refiner is not None and check_files:
        once(("pair", model.path, refiner.path), lambda: loader.check_refiner(model, refiner))
    if control is not None and check_files:
        once(("family", model.path, request.controlnets),
             lambda: control.check_model(loader.detect_ref(model).family))
    if model.is_demo:
        once(("demo",), lambda: notes(DEMO_NOTE))

    # 3. The model family's defaults for what the request leaves unset, the settings it does not take, and
    # what it cannot do (its modes; Flux: CLIP skip, timestep samplers, ...).
    request = for_family(request, family, fallback, ignore_unused)
    if check_files:
        detected = once(("detected", model.path), lambda: loader.detect_ref(model))
        pipeline_class(detected, request.mode)
        detected.family.check(request, sampler_row(request.sampler or DEFAULT_SAMPLER))
        check_control_input(request, detected)
    choice = validate(request)
    if check_files:  # "automatic" as the family means it (Flux: Simple for Euler), then what it cannot run
        choice = detected.family.settle_choice(choice)
        detected.family.check_choice(choice)
        once(("vae", model.path, extras.vae), lambda: check_vae_channels(
            extras.vae, detected.family.latent.vae_channels, detected.family.label))
    # 4. The files of the parts a single file lacks (a Flux transformer's text encoders and VAE).
    model = once(("parts", model.path, request.text_encoders, extras.vae), lambda: plan_model_parts(
        model, request.text_encoders, extras.vae, assets.library(), assets.names_only))
    if model.parts and not request.text_encoders:  # found in the models folder: recorded, and written as Module N
        request = replace(request, text_encoders=tuple(str(path) for role, path in model.parts if role != "vae"))
    if (vae := dict(model.parts).get("vae")) is not None and extras.vae is None:  # likewise the VAE
        extras = replace(extras, vae=vae, vae_hash=short_hash("vae", vae))
    model = with_storage(model, request, family)
    if request.upsample_prompt is not None and model.kind == "single-file":  # text-encoder files load headless
        encoder = next((path.name for role, path in model.parts if role != "vae"), model.path.name)
        raise UsageError(f"--upsample-prompt: {encoder}: a text-encoder file loads without its language-model head "
                         "(nothing to write with); caption upsampling needs a diffusers folder's text encoder")
    if family is not None and not family.capabilities.embeddings and extras.embeddings:
        extras = without_embeddings(extras, family, assets, notes)
    gpu_dtype = family.gpu_dtype if family is not None else "fp16"
    size = inputs.size if inputs else (request.width, request.height)
    placement = placement or detect_runtime(runtime, JobSize(*size, request.batch_size), gpu_dtype)
    if (row := storage_of(model.storage)) is not None and row.quantized:  # bitsandbytes, torchao: CUDA only
        from sdcli.models.quantize import check_machine

        check_machine(row, placement.device, storage_flag(request.low_bits))
    return JobPlan(request, choice, model, placement, assets, extras, inputs, control, refiner, hires_upscaler, faces)


def without_embeddings(extras: Any, family: Any, assets: AssetOptions, notes: Notes) -> Any:
    """A family without textual-inversion slots (Flux): an --embedding is refused; an embeddings-folder file whose
    name is a word of the prompt is left out, with a note."""
    named = {spec.name for spec in extras.embeddings} & {Path(e).stem for e in assets.embeddings}
    if named:
        raise UsageError(f"--embedding: {sorted(named)[0]}: {family.label} models take no textual-inversion "
                         "embeddings")
    notes(f"embeddings not used ({family.label} models take none): {', '.join(s.name for s in extras.embeddings)}")
    return replace(extras, embeddings=())


def with_storage(model: ModelRef, request: GenerationRequest, family: Any = None) -> ModelRef:
    """The model to load with its storage (ModelRef.storage: a storage table label, request.storage) and the text
    encoders quantized with it (--quantize-text-encoder: the family's big ones); what makes no sense refused."""
    from sdcli.request.vocabulary import low_bits_key

    base = low_bits_key(request.low_bits).split(" (")[0] if request.low_bits is not None else AUTOMATIC.lower()
    row, flag = storage_of(base), storage_flag(request.low_bits)
    if request.quantize_text_encoder and (row is None or not row.quantized):
        raise UsageError("--quantize-text-encoder: give --quantize nf4, fp4, int8 or fp8 too (the text encoders are "
                         "quantized as the diffusion model is; --low-bits float8 casts the diffusion model only)")
    if row is None:
        return model
    if model.path.suffix == ".gguf":
        raise UsageError(f"{flag}: {model.path.name} is a GGUF file, stored in low bits already; leave {flag} out")
    if row.quantized and model.kind == "single-file":
        raise UsageError(f"{flag}: {model.path.name} is a single file; quantized loading takes diffusers folders "
                         "(--low-bits float8-e4m3fn stores a single file's diffusion model in fp8)")
    encoders = tuple(getattr(family, "big_text_encoders", ())) if request.quantize_text_encoder else ()
    if request.quantize_text_encoder and not encoders:
        raise UsageError(f"--quantize-text-encoder: {family.label} models have no big text encoder to quantize")
    return replace(model, storage=row.label, storage_encoders=encoders)


def _noted(plan: Any, notes: Notes) -> Any:
    """An add-on or ControlNet plan after its warnings have been told."""
    for warning in plan.warnings() if callable(getattr(plan, "warnings", None)) else getattr(plan, "warnings", ()):
        notes(warning)
    return plan


def recorded_request(plan: JobPlan) -> GenerationRequest:
    """The request as replay records it: ControlNet files, the refiner and a hires upscaler file resolved."""
    request = plan.request
    if request.text_encoders:  # files as absolute paths (names in the models folder stay names)
        request = replace(request, text_encoders=tuple(
            str(Path(t).expanduser().resolve()) if Path(t).expanduser().is_file() else t
            for t in request.text_encoders))
    if plan.control is not None:
        request = replace(request, controlnets=plan.control.record_units())  # absolute paths
    if plan.refiner is not None:
        request = replace(request, refiner=plan.refiner.source or request.refiner)
    if plan.hires_upscaler is not None:  # a file: its absolute path
        ref = plan.hires_upscaler
        request = replace(request, hires=replace(request.hires, upscaler=ref.path or ref.name))
    return request


def resolve_refiner(spec: str | None, offline: bool, library: Any = None) -> ModelRef | None:
    """--refiner resolved like --model (files checked, no weights loaded); errors name --refiner."""
    from sdcli.models import resolve

    if not spec:
        return None
    try:
        return resolve.resolve_model(spec, offline=offline, library=library)
    except SdcliError as exc:
        exc.args = (str(exc).replace("--model:", "--refiner:", 1),)
        raise


def resolve_faces(request: GenerationRequest, assets: AssetOptions) -> Any:
    """--restore-faces resolved: the restorer file and the detector's weights in the models folder."""
    from sdcli.models.faces import resolve_restorer

    return resolve_restorer(request.face_restorer or "", assets.library(), assets.allow_pickle,
                            request.code_former_weight)


def resolve_hires_upscaler(request: GenerationRequest, assets: AssetOptions) -> Any:
    """--hires-upscaler resolved (a name, a file, or a name in the models folder's ESRGAN/), or None."""
    from sdcli.models.upscalers import resolve_upscaler

    if request.hires is None:
        return None
    return resolve_upscaler(request.hires.upscaler, "--hires-upscaler", assets.library(), assets.allow_pickle)
