"""Generation: run(request, pipe) -> images with their infotext, one batch at a time.

The pipeline is injected (tests pass a tiny one). Noise for image i comes from a
CPU generator seeded seed+i, so an image depends neither on the batch size nor on
the device's RNG, and its metadata is enough to make it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sdcli import __version__
from sdcli.core.finite import finite_guard
from sdcli.core.images import PreparedInputs, prepare
from sdcli.core.metadata import build_infotext
from sdcli.core.request import DIRECTIONS, INPAINT_AREAS, MASKED_CONTENTS, GenerationRequest
from sdcli.errors import UsageError
from sdcli.sampling.samplers import SamplerChoice

StepCallback = Callable[[int, int], None]


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


@dataclass(frozen=True)
class RefinerModel:
    """A loaded --refiner and how the infotext names it."""

    pipe: Any
    name: str
    hash: str


def native_size(pipe: Any) -> int:
    """The model's native image side in pixels (UNet sample size x VAE scale factor)."""
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)


def infotext_params(request: GenerationRequest, choice: SamplerChoice, *, seed: int, subseed: int | None,
                    width: int, height: int, model_name: str, model_hash: str,
                    refiner: RefinerModel | None = None) -> dict[str, Any]:
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
        **image_params(request),
        "Version": f"sdcli {__version__}",
    }


def refiner_params(request: GenerationRequest, refiner: RefinerModel | None) -> dict[str, Any]:
    """The WebUI's refiner keys: `Refiner: name [hash]`, `Refiner switch at: 0.8`."""
    if refiner is None:
        return {}
    return {"Refiner": f"{refiner.name} [{refiner.hash}]", "Refiner switch at": f"{request.refiner_switch:g}"}


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


def _latent_zeros(latents: Any, generators: list[Any]) -> Any:
    import torch

    return torch.zeros_like(latents)


def _latent_noise(latents: Any, generators: list[Any]) -> Any:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(latents.shape, generator=generators, device=latents.device, dtype=latents.dtype)


# --masked-content values done in latent space: what replaces the image latents under the mask.
LATENT_CONTENTS = {"latent-noise": _latent_noise, "latent-nothing": _latent_zeros}


@contextmanager
def latent_content(pipe: Any, request: GenerationRequest, inputs: PreparedInputs | None,
                   generators: list[Any]) -> Iterator[None]:
    """Apply --masked-content latent-noise/latent-nothing for one pipeline call.

    diffusers' inpainting pipelines have no argument for it, so their prepare_latents is
    wrapped: the image latents under the mask are replaced before the start noise is added
    (add_noise is linear in the image). At strength 1 the start is pure noise: no change.
    """
    import numpy as np
    import torch

    make = LATENT_CONTENTS.get(request.inpaint.masked_content) if request.inpaint and inputs else None
    if make is None:
        yield
        return
    factor = pipe.vae_scale_factor
    small = inputs.mask.resize((inputs.size[0] // factor, inputs.size[1] // factor))
    mask = torch.from_numpy((np.asarray(small) >= 128).astype(np.float32))[None, None]
    original = pipe.prepare_latents

    def prepare_latents(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        if kwargs.get("is_strength_max", True):
            return original(*args, **kwargs)
        wanted = kwargs.get("return_image_latents", False)
        *outputs, image_latents = original(*args, **{**kwargs, "return_image_latents": True})
        m = mask.to(image_latents.device, image_latents.dtype)
        delta = m * (make(image_latents, generators) - image_latents)
        outputs[0] = outputs[0] + pipe.scheduler.add_noise(delta, torch.zeros_like(delta), kwargs["timestep"])
        return (*outputs, image_latents) if wanted else tuple(outputs)

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        del pipe.prepare_latents


def run(
    request: GenerationRequest,
    pipe: Any,
    choice: SamplerChoice,
    *,
    model_name: str,
    model_hash: str,
    on_step: StepCallback | None = None,
    inputs: PreparedInputs | None = None,
    extra_params: dict[str, Any] | None = None,
    refiner: RefinerModel | None = None,
) -> Iterator[GeneratedImage]:
    """Generate `request.count` batches of `request.batch_size` images; yield each when done.

    `request.seed` must be resolved. `pipe` may be any pipeline of the model: the
    one for `request.mode` is derived from it (shared weights). `inputs` are the
    prepared input images (core.images.prepare); loaded here when not given.
    Raises UsageError for settings the model cannot honour (CLIP skip deeper
    than the text encoder, a mode its UNet cannot run) or for bad input files.
    `extra_params` are added to each infotext (the add-ons' hashes, models.assets).
    """
    import torch

    from sdcli.conditioning.encoding import text_layers
    from sdcli.models.loader import pipeline_for, set_sampler

    # 1. Model-dependent checks and settings; the input images at generation size.
    encoder = pipe.text_encoder if pipe.text_encoder is not None else pipe.text_encoder_2  # refiner: 2nd only
    if request.clip_skip > (layers := text_layers(encoder)):
        raise UsageError(f"--clip-skip: {request.clip_skip} is deeper than this model's {layers} text layers")
    pipe = pipeline_for(pipe, request.mode)
    set_sampler(pipe, choice, request.prediction_type)
    refine = refiner_stage(pipe, request, refiner, choice)
    if inputs is None:
        inputs = prepare(request)
    if inputs is not None:
        width, height = inputs.size
    else:
        width, height = request.width or native_size(pipe), request.height or native_size(pipe)

    # 2. Prompt embeddings, once for the whole run (SDXL: both encoders, pooled; see conditioning.sdxl).
    embeds = encode_prompts(pipe, request)

    def step_end(pipe_: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step:  # num_timesteps, not steps: second-order samplers run more model calls
            on_step(step + 1, pipe_.num_timesteps)
        return kwargs

    # 3. Batches: per-image CPU generators seeded seed + i.
    seeds, subseeds = request.seeds(), request.subseeds()
    for start in range(0, len(seeds), request.batch_size):
        batch_seeds = seeds[start:start + request.batch_size]
        batch_subseeds = subseeds[start:start + request.batch_size]
        n = len(batch_seeds)
        generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
        mode_args = inputs.pipeline_args(request.init.strength, n) if inputs else {"width": width, "height": height}
        if request.subseed_strength:
            mode_args["latents"] = variation_noise(pipe, generators, batch_subseeds, request.subseed_strength,
                                                   width, height, embeds["prompt_embeds"].dtype)
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # DPM++ SDE draws Brownian-tree noise from its own seeds, not the generator: one per image.
            pipe.scheduler.noise_sampler_seed = list(batch_seeds)
        with latent_content(pipe, request, inputs, generators), finite_guard(pipe) as guard:
            result = pipe(
                **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()},
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                generator=generators,
                callback_on_step_end=step_end,
                output_type="latent" if refine else "pil",
                **mode_args,
                **({"denoising_end": request.refiner_switch} if refine else {}),
            )
            if refine:
                result = refine(result.images, generators, step_end, mode_args)
        for offset, (image, seed, subseed) in enumerate(zip(result.images, batch_seeds, batch_subseeds,
                                                            strict=True)):
            if inputs is not None:
                image = inputs.finish(image)  # pasted back through the blurred mask / into the crop
            params = infotext_params(request, choice, seed=seed, subseed=subseed, width=width, height=height,
                                     model_name=model_name, model_hash=model_hash,
                                     refiner=refiner) | (extra_params or {})
            yield GeneratedImage(  # width/height: the generation size, as the infotext's Size
                image=image, index=start + offset, seed=seed, subseed=subseed, width=width, height=height,
                params=params, infotext=build_infotext(request.prompt, request.negative_prompt, params),
                failure=guard.failure(offset),
            )


def encode_prompts(pipe: Any, request: GenerationRequest) -> dict[str, Any]:
    """The embedding arguments of the pipeline call, for a batch of one: the family decides how."""
    from sdcli.models.assets import encoder_text
    from sdcli.models.loader import detected_of

    # The text the encoders see: <lora:...> tags removed, multi-vector embeddings spelled out.
    prompt, negative_prompt = encoder_text(pipe, request.prompt), encoder_text(pipe, request.negative_prompt)
    if detected_of(pipe).family.is_xl:
        from sdcli.conditioning.sdxl import SDXLPromptEncoder

        return SDXLPromptEncoder(pipe, request.clip_skip).pipeline_kwargs(prompt, negative_prompt)
    from sdcli.conditioning.encoding import PromptEncoder

    positive, negative = PromptEncoder(pipe, request.clip_skip).encode_pair(prompt, negative_prompt)
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}


def refiner_stage(pipe: Any, request: GenerationRequest, refiner: RefinerModel | None,
                  choice: SamplerChoice) -> Callable[..., Any] | None:
    """With --refiner: a function finishing the base's latents with the refiner (diffusers'
    denoising_end/denoising_start split at --refiner-switch), else None."""
    from sdcli.models.loader import detected_of, pipeline_for, set_sampler

    if refiner is None:
        return None
    if not detected_of(pipe).family.is_xl or not detected_of(refiner.pipe).family.is_xl:
        raise UsageError("--refiner: both the model and the refiner must be SDXL models (base or refiner)")
    # txt2img hands over to the refiner's img2img pipeline; the image modes to its own kind.
    stage = pipeline_for(refiner.pipe, "img2img" if request.mode == "txt2img" else request.mode)
    set_sampler(stage, choice, request.prediction_type)
    embeds = encode_prompts(stage, request)

    def finish(latents: Any, generators: list[Any], step_end: Any, mode_args: dict[str, Any]) -> Any:
        n = latents.shape[0]
        # The inpainting pipelines take the latents as their image and keep the mask and size.
        kept = {} if request.mode == "txt2img" else {
            k: v for k, v in mode_args.items() if k in ("mask_image", "width", "height", "strength")}
        return stage(image=latents, denoising_start=request.refiner_switch, num_inference_steps=request.steps,
                     guidance_scale=request.cfg_scale, generator=generators, callback_on_step_end=step_end,
                     output_type="pil", **kept,
                     **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()})

    return finish


def variation_noise(pipe: Any, generators: list[Any], subseeds: list[int | None], strength: float,
                    width: int, height: int, dtype: Any) -> Any:
    """Initial latents for variation seeds: slerp(noise(seed), noise(subseed), strength) per image.

    Each image's noise is drawn from its own generator exactly as the pipeline would
    draw it (so strength 0 reproduces the plain image), then spherically
    interpolated towards the subseed's noise as the WebUI does.
    """
    import torch

    shape = (1, pipe.vae.config.latent_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    noises = []
    for gen, subseed in zip(generators, subseeds, strict=True):
        main = torch.randn(shape, generator=gen, device="cpu", dtype=dtype)
        sub = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed), device="cpu", dtype=dtype)
        noises.append(slerp(strength, main, sub))
    return torch.cat(noises).to(pipe.device)


def slerp(t: float, a: Any, b: Any) -> Any:
    """Spherical interpolation between two noise tensors (flattened); t=0 gives a, t=1 gives b."""
    import torch

    if t == 0:
        return a
    a32, b32 = a.double().flatten(), b.double().flatten()
    cos = torch.dot(a32 / a32.norm(), b32 / b32.norm()).clamp(-1, 1)
    if cos.abs() > 0.9995:  # nearly parallel: plain interpolation is exact enough
        mixed = (1 - t) * a32 + t * b32
    else:
        omega = torch.arccos(cos)
        mixed = (torch.sin((1 - t) * omega) * a32 + torch.sin(t * omega) * b32) / torch.sin(omega)
    return mixed.reshape(a.shape).to(a.dtype)
