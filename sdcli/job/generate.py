"""Generation: run(request, pipe) -> images with their infotext, one batch at a time.

The pipeline is injected (tests pass a tiny one); sdcli's own loop (sampling.loop)
uses only its components, as the WebUI does, and the diffusers pipeline itself runs
what the loop does not. Noise for image i comes from its own generator seeded
seed+i (CPU by default, --rng), so an image does not depend on the batch size, and
its metadata is enough to make it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from sdcli import __version__
from sdcli.errors import UsageError
from sdcli.execution.finite import finite_guard
from sdcli.execution.own_loop import own_batch
from sdcli.execution.pipeline_call import pipeline_batch
from sdcli.execution.stages import StepCallback, runs_own_loop
from sdcli.io.images import PreparedInputs, prepare
from sdcli.io.metadata import build_infotext
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import DIRECTIONS, INPAINT_AREAS, MASKED_CONTENTS, GenerationRequest, choice_key
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
    failure: str | None = None  # why it must not be written (core.finite), e.g. NaN in the decode


def infotext_params(request: GenerationRequest, choice: SamplerChoice, *, seed: int, subseed: int | None,
                    width: int, height: int, model_name: str, model_hash: str,
                    refiner: LoadedModel | None = None) -> dict[str, Any]:
    """The WebUI parameter line's fields for one image (omission rules applied)."""
    return {
        "Steps": request.steps,
        "Sampler": choice.sampler.name,
        "Schedule type": choice.schedule_label,
        "CFG scale": f"{request.cfg_scale:g}",
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model_name,
        "Variation seed": subseed,
        "Variation seed strength": f"{request.subseed_strength:g}" if subseed is not None else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        **refiner_params(request, refiner),
        **sampling_params(request, choice),
        **image_params(request),
        "Version": f"sdcli {__version__}",
    }


def refiner_params(request: GenerationRequest, refiner: LoadedModel | None) -> dict[str, Any]:
    """The WebUI's refiner keys: `Refiner: name [hash]`, `Refiner switch at: 0.8`."""
    if refiner is None:
        return {}
    return {"Refiner": f"{refiner.name} [{refiner.hash}]", "Refiner switch at": f"{request.refiner_switch:g}"}


RNG_LABELS = {"cpu": "CPU", "gpu": "GPU", "nv": "NV"}
EMPHASIS_LABELS = {"original": "Original", "no norm": "No norm", "none": "None"}


def sampling_params(request: GenerationRequest, choice: SamplerChoice) -> dict[str, Any]:
    """The WebUI's keys for its pixel-changing settings, written when they apply and differ from its defaults.

    RNG is always written: sdcli's default (CPU) is not the WebUI's (GPU).
    """
    from sdcli.sampling.loop import ETA_DEFAULTS, sampler_takes

    default = ETA_DEFAULTS[choice.sampler.timesteps]
    eta = default if request.eta is None else request.eta
    takes = sampler_takes(choice)
    emphasis = choice_key(request.emphasis)
    return {
        "RNG": RNG_LABELS[choice_key(request.rng)],
        "Emphasis": EMPHASIS_LABELS[emphasis] if emphasis != "original" else None,
        "Eta DDIM" if choice.sampler.timesteps else "Eta": f"{eta:g}" if "eta" in takes and eta != default else None,
        "ENSD": request.ensd if request.ensd and choice.sampler.uses_ensd and eta != 0 else None,
        "Sigma churn": f"{request.s_churn:g}" if "s_churn" in takes and request.s_churn else None,
        "Sigma tmin": f"{request.s_tmin:g}" if "s_tmin" in takes and request.s_tmin else None,
        "Sigma tmax": f"{request.s_tmax:g}" if "s_tmax" in takes and request.s_tmax else None,
        "Sigma noise": f"{request.s_noise:g}" if "s_noise" in takes and request.s_noise != 1.0 else None,
        "Schedule min sigma": f"{request.sigma_min:g}" if request.sigma_min else None,
        "Schedule max sigma": f"{request.sigma_max:g}" if request.sigma_max else None,
    }


def image_params(request: GenerationRequest) -> dict[str, Any]:
    """What the WebUI records for img2img/inpaint, plus sdcli's outpaint settings."""
    params: dict[str, Any] = {}
    if request.init is not None:
        params["Denoising strength"] = f"{request.init.strength:g}"
    if (inpaint := request.inpaint) is not None:
        params["Mask blur"] = inpaint.mask_blur
        if request.mode == "inpaint":
            params["Inpaint area"] = INPAINT_AREAS[inpaint.area]
            params["Masked area padding"] = inpaint.padding if inpaint.area == "masked" else None
            params["Mask mode"] = "Inpaint not masked" if inpaint.invert_mask else None
        params["Masked content"] = MASKED_CONTENTS[inpaint.masked_content]
    if (outpaint := request.outpaint) is not None:
        params["Outpaint"] = " ".join(f"{side} {px}" for side, px in zip(DIRECTIONS, outpaint.pixels, strict=True)
                                      if px)
        params["Outpaint fill"] = outpaint.fill
    return params


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
) -> Iterator[GeneratedImage]:
    """Generate `request.count` batches of `request.batch_size` images; yield each when done.

    `request.seed` must be resolved. `model` (models.loaded.LoadedModel) may hold any pipeline of the
    model: the one for `request.mode` is derived from it (shared weights). `inputs` are the
    prepared input images (core.images.prepare); loaded here when not given.
    SD1/SD2/SDXL models with a sampler of sdcli's own loop (sampling.loop, the WebUI's
    pixels) run it in every mode, switching to `refiner` inside the run as the WebUI;
    other samplers (UniPC, LCM) run the diffusers pipeline, with `refiner` (a loaded model named for the
    infotext) finishing
    SDXL's last steps. `request.hires` adds the hires fix pass (core.hires) with
    `hires_upscaler` (a ready models.upscalers.Upscaler; built-in ones are made here). `extra_params` are added
    to each infotext (the add-ons' hashes, models.assets). Images whose latents or
    decode are not finite carry a `failure` and must not be written. `control` (core.controlnets.
    LoadedControl) steers sdcli's loop with the request's ControlNet units.
    Raises UsageError for settings the model cannot honour (CLIP skip deeper
    than the text encoder, a mode its UNet cannot run) or for bad input files.
    """
    from sdcli.execution.hires import hires_stage
    from sdcli.execution.stages import prompt_encoder, refiner_stage
    from sdcli.models.assets import encoder_text
    from sdcli.models.loader import set_sampler
    from sdcli.request.hires import final_size, hires_choices, hires_params

    # 1. Model-dependent checks and settings; the input images at generation size.
    model = model.for_mode(request.mode)
    own = runs_own_loop(model, choice, request)
    if not own:
        set_sampler(model, choice, request.prediction_type)
    if inputs is None:
        inputs = prepare(request)
    if inputs is not None:
        width, height = inputs.size
    else:
        width, height = request.width or model.native_size, request.height or model.native_size

    # 2. Prompt conditioning, once for the whole run. The encoders see the text with <lora:...>
    # tags removed and multi-vector embeddings spelled out; the infotext keeps the prompt as given.
    encoded = replace(request, prompt=encoder_text(model, request.prompt),
                      negative_prompt=encoder_text(model, request.negative_prompt))
    encoder = prompt_encoder(model, request, (width, height))
    if request.clip_skip > (layers := encoder.capabilities.clip_skip_layers):
        raise UsageError(f"--clip-skip: {request.clip_skip} is deeper than this model's {layers} text layers")
    refine = refiner_stage(model, encoded, refiner, choice, own, (width, height))
    hires = hires_stage(model, encoded, own, (width, height), hires_upscaler)
    hires_keys = hires_params(request, *hires_choices(request), hires.upscaler.ref.name) if hires else {}
    batch_run = own_batch if own else pipeline_batch
    control_params: dict[str, Any] = {}
    if request.controlnets and control is None:
        raise UsageError("--controlnet: the ControlNet models were not loaded for this run")
    if control is not None:
        from functools import partial

        from sdcli.controlnet.plan import check_loop

        check_loop(own)
        crop = (inputs.original.size, inputs.box) if inputs is not None and inputs.box else None
        hook, control_params = control.prepare((width, height), request.steps_run, crop)
        batch_run = partial(own_batch, control=hook)
        if hires is not None:  # the units steer the hires pass too, their images fitted to its size
            hires.control = control.prepare(final_size(width, height, request.hires, model.family.latent.vae_scale),
                                            hires.request.steps)[0]

    # 3. Batches: per-image generators seeded seed + i.
    seeds, subseeds = request.seeds(), request.subseeds()
    pipes = (model.pipe, refiner.pipe) if refine and refiner else (model.pipe,)
    for start in range(0, len(seeds), request.batch_size):
        batch_seeds = seeds[start:start + request.batch_size]
        batch_subseeds = subseeds[start:start + request.batch_size]
        with finite_guard(*pipes) as guard:
            images = batch_run(encoded, model, choice, encoder, inputs, batch_seeds, batch_subseeds, width, height,
                               on_step, refine, hires)
        for offset, (image, seed, subseed) in enumerate(zip(images, batch_seeds, batch_subseeds, strict=True)):
            if inputs is not None:
                image = inputs.finish(image)  # pasted back through the blurred mask / into the crop
            params = infotext_params(request, choice, seed=seed, subseed=subseed, width=width, height=height,
                                     model_name=model_name, model_hash=model_hash,
                                     refiner=refiner) | hires_keys | control_params | (extra_params or {})
            yield GeneratedImage(  # width/height: the generation size, as the infotext's Size
                image=image, index=start + offset, seed=seed, subseed=subseed, width=width, height=height,
                params=params, infotext=build_infotext(request.prompt, request.negative_prompt, params),
                failure=guard.failure(offset),
            )
