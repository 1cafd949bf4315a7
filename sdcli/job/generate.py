"""Generation: run(request, model) -> images with their infotext, one batch at a time.

The pipeline is injected (tests pass a tiny one); sdcli's own loop (sampling.loop)
uses only its components, as the WebUI does, and the diffusers pipeline itself runs
what the loop does not. Noise for image i comes from its own generator seeded
seed+i (CPU by default, --rng), so an image does not depend on the batch size, and
its metadata is enough to make it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sdcli import __version__
from sdcli.controlnet.plan import check_loop
from sdcli.errors import UsageError
from sdcli.execution.finite import finite_guard
from sdcli.execution.own_loop import control_input, own_batch
from sdcli.execution.pipeline_call import pipeline_batch
from sdcli.execution.stages import StepCallback, runs_own_loop
from sdcli.io.images import PreparedInputs, prepare
from sdcli.io.metadata import build_infotext
from sdcli.models.loaded import LoadedModel
from sdcli.request.fields import infotext_values
from sdcli.request.generation import GenerationRequest, choice_key, with_defaults
from sdcli.request.written import Written
from sdcli.sampling.samplers import SamplerChoice


@dataclass
class GeneratedImage:
    """One finished image and everything needed to write and describe it."""

    image: Any  # PIL.Image.Image
    index: int
    seed: int
    subseed: int | None
    width: int
    height: int
    params: dict[str, Any]
    infotext: str
    failure: str | None = None  # why it must not be written (execution.finite), e.g. NaN in the decode


def infotext_params(request: GenerationRequest, choice: SamplerChoice, *, seed: int, subseed: int | None,
                    width: int, height: int, model_name: str, model_hash: str,
                    refiner: str | None = None, hires: tuple[Any, Any, str] | None = None,
                    traits: tuple[str, ...] = (), vae: str | None = None) -> dict[str, Any]:
    """The WebUI parameter line's fields for one image: the field table's keys (request.fields, omission
    rules applied there), the model's and the size. `refiner`: "name [hash]" of the refiner; `hires`: the hires
    pass's (first, second) samplers and upscaler name, when it runs; `traits`: what the model's family takes
    (families.base.Capabilities.traits: Forge's `Distilled CFG Scale` is written for models with distilled
    guidance); `vae`: the VAE file's name (Forge's `Module 1` beside the text encoders)."""
    from sdcli.sampling.loop import ETA_DEFAULTS, sampler_takes

    written = Written(request, choice, seed, subseed, width, height, takes=sampler_takes(choice),
                      eta_default=ETA_DEFAULTS[choice.sampler.timesteps],
                      refiner=refiner, hires=hires, traits=traits, vae=vae)
    return {
        "Size": f"{width}x{height}",  # the generation size (with an input image, its fitted size)
        "Model hash": model_hash,
        "Model": model_name,
        **infotext_values(written),
        "Version": f"sdcli {__version__}",
    }


def run(
    request: GenerationRequest,
    model: LoadedModel,
    choice: SamplerChoice,
    *,
    model_name: str,
    model_hash: str,
    on_step: StepCallback | None = None,
    inputs: PreparedInputs | None = None,
    extra_params: dict[str, Any] | None = None,
    refiner: LoadedModel | None = None,
    control: Any = None,
    hires_upscaler: Any = None,
    faces: Any = None,
    group: Sequence[GenerationRequest] = (),
) -> Iterator[GeneratedImage]:
    """Generate `request.count` batches of `request.batch_size` images; yield each when done.

    `group`: requests that differ from `request` (the first of them) only in their prompts and seeds (a
    prompt file's consecutive lines), run as one batch of all their images, image i keeping its own seed,
    conditioning and infotext; only where `groupable` says so.

    `request.seed` must be resolved. `model` (models.loaded.LoadedModel) may hold any pipeline of the
    model: the one for `request.mode` is derived from it (shared weights). `inputs` are the
    prepared input images (io.images.prepare); loaded here when not given.
    SD1/SD2/SDXL models with a sampler of sdcli's own loop (sampling.loop, the WebUI's
    pixels) run it in every mode, switching to `refiner` inside the run as the WebUI;
    other samplers (UniPC, LCM) run the diffusers pipeline, with `refiner` (a loaded model named for the
    infotext) finishing
    SDXL's last steps. `request.hires` adds the hires fix pass (execution.hires) with
    `hires_upscaler` (a ready models.upscalers.Upscaler; built-in ones are made here). `extra_params` are added
    to each infotext (the add-ons' hashes, models.assets). Images whose latents or
    decode are not finite carry a `failure` and must not be written. `control` (controlnet.plan.
    LoadedControl) steers sdcli's loop with the request's ControlNet units. `faces` (a ready
    models.faces.FaceRestorer) restores the faces of each decoded image, before an input's mask pastes it back
    (the WebUI's order).
    Raises UsageError for settings the model cannot honour (CLIP skip deeper
    than the text encoder, a mode its UNet cannot run) or for bad input files.
    """
    from sdcli.execution.hires import hires_stage
    from sdcli.execution.references import prepare_references
    from sdcli.execution.stages import prompt_encoder, refiner_stage
    from sdcli.execution.tiling import circular_padding
    from sdcli.models.assets import encoder_text
    from sdcli.models.loader import set_sampler
    from sdcli.request.generation import hires_choices
    from sdcli.request.hires import final_size

    # 1. Model-dependent checks and settings; the input images at generation size. Settings still unset (a
    # request that did not come through the plan step) take the family's defaults.
    model = model.for_mode(request.mode)
    request = with_defaults(request, model.family.defaults_for(choice_key(request.emphasis)))
    group = [with_defaults(r, model.family.defaults_for(choice_key(r.emphasis))) for r in group]
    choice = model.family.settle_choice(choice)  # "automatic" as the family means it (Flux: Simple)
    own = runs_own_loop(model, choice, request)
    if not own:
        set_sampler(model, choice, request.prediction_type)
    if inputs is None:
        inputs = prepare(request)
    references = prepare_references(model, request) if request.mode == "edit" else None
    if inputs is not None:
        width, height = inputs.size
    elif references is not None:  # an edit: the first reference image's size, as its family fits it
        width, height = request.width or references.size[0], request.height or references.size[1]
    else:
        width, height = request.width or model.native_size, request.height or model.native_size

    # 2. Prompt conditioning, once for the whole run. The encoders see the text with <lora:...>
    # tags removed and multi-vector embeddings spelled out; the infotext keeps the prompt as given.
    encoded = replace(request, prompt=encoder_text(model, request.prompt),
                      negative_prompt=encoder_text(model, request.negative_prompt))
    plain_encoder = prompt_encoder(model, request, (width, height))
    encoder = plain_encoder if references is None else references.encoder(model, plain_encoder)
    if references is not None:
        extra_params = {**references.params(), **(extra_params or {})}
    if request.clip_skip > (layers := encoder.capabilities.clip_skip_layers):
        raise UsageError(f"--clip-skip: {request.clip_skip} is deeper than this model's {layers} text layers")
    refine = refiner_stage(model, encoded, refiner, choice, own, (width, height))
    hires = hires_stage(model, encoded, own, (width, height), hires_upscaler)
    hires_names = (*hires_choices(request), hires.upscaler.ref.name) if hires else None
    # Caption upsampling (Flux.2 dev): each image's prompt rewritten by the text encoder (seeing an edit's reference
    # images as given), seeded by its seed.
    upsampler = (model.family.prompt_upsampler(model.pipe, request.upsample_prompt,
                                               references.originals if references is not None else ())
                 if request.upsample_prompt is not None else None)
    batch_run = own_batch if own else pipeline_batch
    if request.zero_negative and not own:
        raise UsageError("--zero-negative: this model or sampler runs diffusers' pipeline, not sdcli's loop, "
                         "which zeroes the negative conditioning")
    if request.cfg_norm is not None and (not own or choice.sampler.timesteps):
        raise UsageError("--cfg-norm: this model or sampler runs diffusers' pipeline or a timestep sampler, not "
                         "sdcli's loop on denoised latents, where CFGNorm applies")
    control_params: dict[str, Any] = {}
    if any(unit.model for unit in request.controlnets) and control is None:
        raise UsageError("--controlnet: the ControlNet models were not loaded for this run")
    crop = (inputs.original.size, inputs.box) if inputs is not None and inputs.box else None
    if (extra := control_input(model, request, control, (width, height), crop)) is not None:
        check_loop(own)
        batch_run = partial(own_batch, control_input=extra)
    if control is not None and control.plan.units:
        check_loop(own)
        hook, control_params = control.prepare((width, height), request.steps_run, crop)
        batch_run = partial(batch_run, control=hook)
        if hires is not None:  # the units steer the hires pass too, their images fitted to its size
            hires.control = control.prepare(final_size(width, height, request.hires, model.family.latent.vae_scale),
                                            hires.request.steps)[0]
    if own and references is not None and references.schedule_tokens and not (request.width or request.height):
        batch_run = partial(batch_run, schedule_tokens=references.schedule_tokens)  # the graph's pixels (Flux.2)

    # 3. Batches: per-image generators seeded seed + i; a group's images in one batch, each its own request's.
    vae_name = model.addons.vae_path.name if model.addons.vae_path else None
    refiner_label = f"{refiner.name} [{refiner.hash}]" if refiner is not None else None
    if group:
        if not own or refine or hires or control is not None or extra is not None or upsampler is not None:
            raise ValueError("a group of requests runs only through sdcli's loop, without a refiner, hires, "
                             "control or caption upsampling (job.generate.groupable)")
        batch_run = partial(batch_run, prompts=[(encoder_text(model, r.prompt), encoder_text(model, r.negative_prompt))
                                                for r in group for _ in range(r.total_images)])
    batches = [[(r, seed, subseed) for r in group for seed, subseed in zip(r.seeds(), r.subseeds(), strict=True)]]
    if not group:
        pairs, size = list(zip(request.seeds(), request.subseeds(), strict=True)), request.batch_size
        batches = [[(request, seed, subseed) for seed, subseed in pairs[at:at + size]]
                   for at in range(0, len(pairs), size)]
    if upsampler is not None:  # one image a batch: each encodes its own rewritten prompt
        batches = [[image] for batch in batches for image in batch]
    pipes = (model.pipe, refiner.pipe) if refine and refiner else (model.pipe,)
    start = 0
    for batch in batches:
        batch_seeds, batch_subseeds = [seed for _, seed, _ in batch], [subseed for _, _, subseed in batch]
        batch_encoder, batch_hires, rewritten = encoder, hires, {}
        if upsampler is not None:  # the rewrite encoded, an edit's reference latents given with it
            batch_encoder = upsampler.encoder(plain_encoder, batch_seeds[0])
            if references is not None:
                batch_encoder = references.encoder(model, batch_encoder)
            if hires is not None:  # the hires pass encodes the rewritten prompt too (its own, with --hires-prompt)
                batch_hires = replace(hires, encoder=upsampler.encoder(hires.encoder, batch_seeds[0]))
        with finite_guard(*pipes) as guard, circular_padding(request.tiling, *pipes):  # --tiling, this batch only
            images = batch_run(encoded, model, choice, batch_encoder, inputs, batch_seeds, batch_subseeds, width,
                               height, on_step, refine, batch_hires)
        if upsampler is not None:
            rewritten = {"Upsampled prompt": upsampler.text(batch_seeds[0])}
        for offset, (image, (image_request, seed, subseed)) in enumerate(zip(images, batch, strict=True)):
            if image_request.face_restorer:
                if faces is None:
                    raise UsageError("--restore-faces: the face restorer was not loaded for this run")
                image = faces.restore(image, seed)
            if inputs is not None:
                image = inputs.finish(image)  # pasted back through the blurred mask / into the crop
            params = _with_modules(infotext_params(
                image_request, choice, seed=seed, subseed=subseed, width=width, height=height, model_name=model_name,
                model_hash=model_hash, refiner=refiner_label, hires=hires_names,
                traits=model.family.capabilities.traits, vae=vae_name)
                | rewritten | control_params | (extra_params or {}))
            yield GeneratedImage(  # width/height: the generation size, as the infotext's Size
                image=image, index=start + offset, seed=seed, subseed=subseed, width=width, height=height,
                params=params, infotext=build_infotext(image_request.prompt, image_request.negative_prompt, params),
                failure=guard.failure(offset),
            )
        start += len(batch)


def groupable(request: GenerationRequest, model: LoadedModel, choice: SamplerChoice, *,
              refiner: LoadedModel | None = None, control: Any = None) -> bool:
    """Whether requests like `request` can run as one group (run's `group`): sdcli's loop samples them, with
    no refiner, hires pass, ControlNet or reference images (those condition or finish each request apart)."""
    model = model.for_mode(request.mode)
    request = with_defaults(request, model.family.defaults_for(choice_key(request.emphasis)))
    return (runs_own_loop(model, model.family.settle_choice(choice), request) and refiner is None
            and request.hires is None and not request.controlnets and control is None and request.mode != "edit"
            and request.upsample_prompt is None)


def asked_infotext(request: GenerationRequest, choice: SamplerChoice, family: Any, *, model_name: str,
                   model_hash: str, inputs: PreparedInputs | None = None, extra_params: dict[str, Any] | None = None,
                   refiner: str | None = None, hires_upscaler: str | None = None,
                   vae: str | None = None) -> str:
    """The infotext `run` writes for image 0 of `request` (seed resolved), worked out without loading or running
    the network: the WebUI's infotext of a job that made no image (image 0 as asked). `family`: the model's
    (None: the request as it is); `refiner`: its "name [hash]"; `hires_upscaler`: the hires pass's upscaler name;
    `vae`: the VAE file's name. Keys only a run can know (ControlNet units' sizes, an edit's references, an
    upsampled prompt) are not written."""
    from sdcli.request.generation import hires_choices

    if family is not None:
        request = with_defaults(request, family.defaults_for(choice_key(request.emphasis)))
        choice = family.settle_choice(choice)
    native = family.native_size_for(request.prediction_type or family.prediction) if family is not None else 512
    width, height = inputs.size if inputs is not None else (request.width or native, request.height or native)
    hires = (*hires_choices(request), hires_upscaler or "") if request.hires is not None else None
    traits = family.capabilities.traits if family is not None else ()
    params = _with_modules(infotext_params(
        request, choice, seed=request.seeds()[0], subseed=request.subseeds()[0], width=width, height=height,
        model_name=model_name, model_hash=model_hash, refiner=refiner, hires=hires, traits=traits, vae=vae)
        | (extra_params or {}))
    return build_infotext(request.prompt, request.negative_prompt, params)


def _with_modules(params: dict[str, Any]) -> dict[str, Any]:
    """With Forge's `Module N` keys the VAE is Module 1: its `VAE`/`VAE hash` keys are left out, as Forge does
    (its reader takes a `VAE` key instead of every Module key)."""
    if "Module 1" not in params:
        return params
    return {k: v for k, v in params.items() if k not in ("VAE", "VAE hash")}
