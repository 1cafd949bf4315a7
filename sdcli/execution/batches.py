"""One batch of images, two ways: sdcli's own loop, or the diffusers pipeline.

`own_batch` runs SD1/SD2/SDXL models through sampling.loop with the WebUI's conditioning,
noise, inpainting inputs and 8-bit conversion; `pipeline_batch` runs the diffusers
pipeline for what the loop does not run (families without a loop yet: every sampler
on SD 1.x/2.x/XL runs the loop). Both take the same arguments and return PIL images. Imports torch inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError
from sdcli.io.images import PreparedInputs
from sdcli.request.generation import GenerationRequest, choice_key
from sdcli.sampling.samplers import SamplerChoice

StepCallback = Callable[[int, int], None]

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


def is_xl_unet(pipe: Any) -> bool:
    """An SDXL UNet (base, refiner or inpainting): pooled text and size/crop conditioning."""
    return pipe.unet.config.get("addition_embed_type") == "text_time"


def runs_own_loop(pipe: Any, choice: SamplerChoice, request: GenerationRequest) -> bool:
    """Whether sdcli's own loop runs this: a sampler of the loop on an SD1/SD2/SDXL UNet (4 or 9 channels)."""
    config = pipe.unet.config
    scheduler = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler).config
    return (choice.sampler.function is not None and (config.get("addition_embed_type") is None or is_xl_unet(pipe))
            and config.in_channels in (4, 9)
            and scheduler.get("beta_schedule", "scaled_linear") in ("scaled_linear", "linear")
            and scheduler.get("prediction_type", "epsilon") in ("epsilon", "v_prediction"))


def to_pil(unit: Any) -> list[Any]:
    """[B, 3, H, W] pixels in [0, 1] -> 8-bit images, truncating as the WebUI does (not rounding)."""
    import numpy as np
    from PIL import Image

    pixels = (255.0 * unit.float()).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p.astype(np.uint8)) for p in pixels]


def decode(pipe: Any, latents: Any) -> list[Any]:
    """Latents -> images, one at a time (batch-independent pixels), as the WebUI decodes."""
    import torch

    vae = pipe.vae
    # A guarded VAE (models.vae.guard_decode) casts for itself and redoes a NaN decode in fp32 from
    # these fp32 latents, as the WebUI does; an unguarded one gets its own dtype.
    cast = (lambda z: z) if getattr(vae, "sdcli_guarded", False) else (lambda z: z.to(vae.dtype))
    with torch.no_grad():
        out = [vae.decode(cast(lat[None] / vae.config.scaling_factor), return_dict=False)[0] for lat in latents]
    return to_pil(((torch.cat(out).float() + 1.0) / 2.0).clamp(0, 1))


def encode_image(pipe: Any, image: Any, n: int) -> Any:
    """An input image -> its latent (the VAE posterior's mean), repeated n times."""
    import numpy as np
    import torch

    unit = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    pixels = torch.from_numpy(2.0 * unit - 1.0).permute(2, 0, 1)[None].to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        latent = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    return latent.float().repeat(n, 1, 1, 1)


def sampling_options(request: GenerationRequest) -> Any:
    """The request's WebUI sampler settings for the loop."""
    from sdcli.sampling.loop import SamplingOptions

    return SamplingOptions(eta=request.eta, s_churn=request.s_churn, s_tmin=request.s_tmin, s_tmax=request.s_tmax,
                           s_noise=request.s_noise, sigma_min=request.sigma_min, sigma_max=request.sigma_max)


def image_noise(request: GenerationRequest, pipe: Any, seeds: list[int], subseeds: list[int | None], width: int,
                height: int) -> Any:
    """The image RNG of a batch at width x height: per-image generators, variation seeds, ENSD."""
    from sdcli.sampling.rng import ImageNoise

    factor = pipe.vae_scale_factor
    shape = (pipe.vae.config.latent_channels, height // factor, width // factor)
    return ImageNoise(choice_key(request.rng), shape, seeds, pipe.unet.device, subseeds=subseeds,
                      subseed_strength=request.subseed_strength, ensd=request.ensd)


def cond_schedule(request: GenerationRequest, choice: SamplerChoice, encoder: Any) -> Any:
    """Prompt editing, alternation and AND over the run's denoiser calls (x2 for second-order samplers)."""
    from sdcli.conditioning.schedule import CondSchedule, prompt_schedule

    calls = request.steps * (2 if choice.sampler.second_order else 1)
    negative = None
    if hasattr(encoder, "negative_encode"):  # SDXL: an all-empty negative is zeroed, as in the WebUI
        negative = encoder.negative_encode(all(t == "" for _, t in prompt_schedule(request.negative_prompt, calls)))
    return CondSchedule.build(request.prompt, request.negative_prompt, calls, encoder.encode, negative)


def own_batch(request: GenerationRequest, pipe: Any, choice: SamplerChoice, encoder: Any,
              inputs: PreparedInputs | None, seeds: list[int], subseeds: list[int | None], width: int,
              height: int, on_step: StepCallback | None, refine: Any = None, hires: Any = None,
              control: Any = None) -> list[Any]:
    """One batch through sdcli's loop: WebUI sigmas, samplers, CFG and noise; `refine` (OwnRefiner):
    the WebUI's in-loop refiner switch; `hires` (core.hires.HiresStage): the hires fix pass; `control`
    (sampling.control.ControlHook): ControlNet units."""
    from sdcli.sampling.loop import sample
    from sdcli.sampling.refiner import Refiner

    denoiser, model_sigmas = loop_denoiser(request, pipe, choice, encoder)
    if refine is not None:
        refined = cond_schedule(request, choice, refine.encoder)
        denoiser.refiner = Refiner(refine.pipe.unet, refined.conds_at, refined.uncond_at, request.refiner_switch)
    if control is not None:
        denoiser.control, on_step = control, control.follow(on_step)
    noise = image_noise(request, pipe, seeds, subseeds, width, height)
    init = encode_image(pipe, inputs.image, len(seeds)) if inputs is not None else None
    if inputs is not None and inputs.mask is not None:
        denoiser.masking = inpaint_masking(pipe, request, inputs, init, noise)
        init = denoiser.masking.init_latent
    latents = sample(choice, denoiser, noise, model_sigmas, request.steps, options=sampling_options(request),
                     init_latent=init, strength=request.init.strength if request.init else 1.0,
                     sdxl=is_xl_unet(pipe), on_step=on_step)
    if denoiser.masking is not None:  # the kept area is the input's latent exactly, as in the WebUI
        keep = denoiser.masking.mask
        latents = latents * (1 - keep) + denoiser.masking.init_latent * keep
    if hires is not None:
        latents = hires.run(pipe, latents, seeds, subseeds, on_step)
    return decode(refine.pipe if denoiser.switched else pipe, latents)  # the WebUI decodes with the model loaded


def loop_denoiser(request: GenerationRequest, pipe: Any, choice: SamplerChoice, encoder: Any) -> tuple[Any, Any]:
    """The loop's CFG denoiser for `request` (its prompts through `encoder`) and the model's sigmas."""
    from sdcli.models.loader import PREDICTION_TYPES
    from sdcli.sampling.refiner import RefinedDenoiser
    from sdcli.sampling.schedules import ModelSigmas, alphas_cumprod

    config = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler).config
    model_sigmas = ModelSigmas(alphas_cumprod(config))
    schedule = cond_schedule(request, choice, encoder)
    prediction = PREDICTION_TYPES[request.prediction_type] if request.prediction_type else None
    denoiser = RefinedDenoiser(pipe.unet, model_sigmas, prediction or config.get("prediction_type", "epsilon"),
                               schedule.conds_at, schedule.uncond_at, request.cfg_scale)
    return denoiser, model_sigmas


def inpaint_masking(pipe: Any, request: GenerationRequest, inputs: PreparedInputs, init: Any, noise: Any) -> Any:
    """The WebUI's inpainting inputs: a rounded latent mask, --masked-content in latent space, and the
    9-channel UNet's extra input (mask + latent of the image with the masked area blanked)."""
    import numpy as np
    import torch

    from sdcli.sampling.denoiser import Masking

    n, (h, w) = init.shape[0], init.shape[-2:]
    small = np.asarray(inputs.mask.convert("RGB").resize((w, h)), dtype=np.float32)[..., 0] / 255
    repaint = torch.from_numpy(np.around(small)).to(init.device)[None, None].expand_as(init)
    keep = 1.0 - repaint
    content = request.inpaint.masked_content
    if content == "latent-noise":  # noise of the image's own seed (the WebUI's first draw)
        init = init * keep + seed_noise(noise) * repaint
    elif content == "latent-nothing":
        init = init * keep
    image_cond = None
    if pipe.unet.config.in_channels == 9:
        full = torch.from_numpy(np.around(np.asarray(inputs.mask.convert("L"), dtype=np.float32) / 255))[None, None]
        unit = torch.from_numpy(np.asarray(inputs.image.convert("RGB"), dtype=np.float32) / 255.0)
        source = (2.0 * unit - 1.0).permute(2, 0, 1)[None]
        blanked = (source * (1.0 - full)).to(pipe.vae.device, pipe.vae.dtype)
        with torch.no_grad():
            masked_latent = pipe.vae.encode(blanked).latent_dist.mean * pipe.vae.config.scaling_factor
        small_full = torch.nn.functional.interpolate(full, size=(h, w))
        image_cond = torch.cat([small_full.to(init.device), masked_latent.float()], dim=1).repeat(n, 1, 1, 1)
    return Masking(init_latent=init, mask=keep, image_cond=image_cond)


def seed_noise(noise: Any) -> Any:
    """The start noise of a batch's seeds, from fresh generators (the image RNG itself is left untouched)."""
    from sdcli.sampling.rng import ImageNoise

    return ImageNoise(noise.source, noise.shape, noise.seeds, noise.device).first()


def prompt_encoder(pipe: Any, request: GenerationRequest, size: tuple[int, int] = (1024, 1024)) -> Any:
    """The family's prompt encoder: SDXL's two encoders at generation size `size` (conditioning.sdxl),
    else the WebUI's CLIP encoding."""
    from sdcli.models.loader import detected_of

    if detected_of(pipe).family.is_xl:
        from sdcli.conditioning.sdxl import SDXLPromptEncoder

        return SDXLPromptEncoder(pipe, request.clip_skip, choice_key(request.emphasis), size)
    from sdcli.conditioning.encoding import PromptEncoder

    return PromptEncoder(pipe, request.clip_skip, choice_key(request.emphasis))


def pipeline_embeds(encoder: Any, prompt: str, negative: str) -> dict[str, Any]:
    """The embedding arguments of a diffusers pipeline call, for a batch of one."""
    if hasattr(encoder, "pipeline_kwargs"):  # SDXL: embeddings, pooled embeddings, both for CFG
        return encoder.pipeline_kwargs(prompt, negative)
    positive, negative_embeds = encoder.encode_pair(prompt, negative)
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative_embeds}


@dataclass(frozen=True)
class OwnRefiner:
    """The refiner for sdcli's loop: its pipeline (UNet, VAE) and its prompt encoder."""

    pipe: Any
    encoder: Any


def refiner_stage(pipe: Any, request: GenerationRequest, refiner: Any, choice: SamplerChoice, own: bool = False,
                  size: tuple[int, int] = (1024, 1024)) -> Any:
    """With --refiner: for sdcli's loop (`own`) an OwnRefiner it switches to, as the WebUI; else a function
    finishing the base's latents with the refiner (diffusers' denoising_end/denoising_start split at
    --refiner-switch). None without a refiner."""
    from sdcli.conditioning.sdxl import SDXLPromptEncoder
    from sdcli.models.loader import detected_of, pipeline_for, set_sampler

    if refiner is None:
        return None
    if not detected_of(pipe).family.is_xl or not detected_of(refiner.pipe).family.is_xl:
        raise UsageError("--refiner: both the model and the refiner must be SDXL models (base or refiner)")
    if own:
        return OwnRefiner(refiner.pipe, prompt_encoder(refiner.pipe, request, size))
    # txt2img hands over to the refiner's img2img pipeline; the image modes to its own kind.
    stage = pipeline_for(refiner.pipe, "img2img" if request.mode == "txt2img" else request.mode)
    set_sampler(stage, choice, request.prediction_type)
    embeds = SDXLPromptEncoder(stage, request.clip_skip, choice_key(request.emphasis)).pipeline_kwargs(
        request.prompt, request.negative_prompt)

    def finish(latents: Any, generators: list[Any], step_end: Any, mode_args: dict[str, Any]) -> Any:
        n = latents.shape[0]
        # The inpainting pipelines take the latents as their image and keep the mask and size.
        kept = {} if request.mode == "txt2img" else {
            k: v for k, v in mode_args.items() if k in ("mask_image", "width", "height", "strength")}
        return stage(image=latents, denoising_start=request.refiner_switch, num_inference_steps=request.steps,
                     guidance_scale=request.cfg_scale, generator=generators, callback_on_step_end=step_end,
                     output_type="pt", **kept, **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()})

    return finish


def pipeline_batch(request: GenerationRequest, pipe: Any, choice: SamplerChoice, encoder: Any,
                   inputs: PreparedInputs | None, seeds: list[int], subseeds: list[int | None], width: int,
                   height: int, on_step: StepCallback | None, refine: Any = None, hires: Any = None) -> list[Any]:
    """One batch through the diffusers pipeline (timestep samplers, other families, the SDXL refiner)."""
    import torch

    from sdcli.conditioning.schedule import CondSchedule

    def step_end(pipe_: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step:  # num_timesteps, not steps: second-order samplers run more model calls
            on_step(step + 1, pipe_.num_timesteps)
        return kwargs

    if choice.sampler.loop_only:
        raise UsageError(f"--sampler: {choice.sampler.name} runs only in sdcli's own loop, which does not run "
                         "this model yet (SD 1.x/2.x only); choose another sampler (see `sdcli samplers`)")
    if request.subseed_strength and inputs is not None:
        raise UsageError(f"--subseed-strength: {choice.sampler.name} runs in the diffusers pipeline, which draws "
                         "its own start noise for an input image; use a sampler of sdcli's own loop (e.g. Euler a)")
    if not CondSchedule.is_plain(request.prompt, request.negative_prompt, request.steps):
        raise UsageError(f"--sampler: {choice.sampler.name} ({request.mode}) runs in the diffusers pipeline, which "
                         "cannot change the prompt per step; prompt editing [a:b:N], [a|b] and AND need a "
                         "sampler of sdcli's own loop (e.g. 'Euler a', 'DPM++ 2M', 'DDIM')")
    if inputs is not None and int(request.steps * request.init.strength) < 1:  # diffusers' own img2img count
        raise UsageError(f"--strength: {request.init.strength:g} x --steps {request.steps} runs no step in the "
                         f"diffusers pipeline ({choice.sampler.name}, rounded down); raise --steps or --strength")
    embeds = pipeline_embeds(encoder, request.prompt, request.negative_prompt)
    n = len(seeds)
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    mode_args = inputs.pipeline_args(request.init.strength, n) if inputs else {"width": width, "height": height}
    if request.subseed_strength and inputs is None:
        first = image_noise(request, pipe, seeds, subseeds, width, height).first()
        mode_args["latents"] = first.to(embeds["prompt_embeds"].dtype)
    if hasattr(pipe.scheduler, "noise_sampler_seed"):
        # DPM++ SDE draws Brownian-tree noise from its own seeds, not the generator: one per image.
        pipe.scheduler.noise_sampler_seed = list(seeds)
    with latent_content(pipe, request, inputs, generators):
        result = pipe(
            **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()},
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="latent" if refine else "pt",
            **mode_args,
            **({"denoising_end": request.refiner_switch} if refine else {}),
        )
        if refine:
            result = refine(result.images, generators, step_end, mode_args)
    return to_pil(result.images)
