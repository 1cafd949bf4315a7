"""One batch through the diffusers pipeline, for what sdcli's own loop does not run (UniPC, LCM, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sdcli.errors import UsageError
from sdcli.execution.latents import to_pil
from sdcli.execution.own_loop import image_noise
from sdcli.execution.stages import StepCallback
from sdcli.families.base import PromptEncoder
from sdcli.io.images import PreparedInputs
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import GenerationRequest
from sdcli.sampling import preview
from sdcli.sampling.samplers import SamplerChoice


def _latent_zeros(latents: Any, generators: list[Any]) -> Any:
    import torch

    return torch.zeros_like(latents)


def _latent_noise(latents: Any, generators: list[Any]) -> Any:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(latents.shape, generator=generators, device=latents.device, dtype=latents.dtype)


LATENT_CONTENTS = {"latent-noise": _latent_noise, "latent-nothing": _latent_zeros}


@contextmanager
def latent_content(model: LoadedModel, request: GenerationRequest, inputs: PreparedInputs | None,
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
    pipe: Any = model.pipe  # its inpainting pipeline (prepare_latents)
    factor = model.family.latent.vae_scale
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


def pipeline_batch(request: GenerationRequest, model: LoadedModel, choice: SamplerChoice, encoder: PromptEncoder,
                   inputs: PreparedInputs | None, seeds: list[int], subseeds: list[int | None], width: int,
                   height: int, on_step: StepCallback | None, refine: Any = None, hires: Any = None) -> list[Any]:
    """One batch through the diffusers pipeline (timestep samplers, other families, the SDXL refiner)."""
    import torch

    from sdcli.conditioning.schedule import CondSchedule

    def step_end(pipe_: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step:  # num_timesteps, not steps: second-order samplers run more model calls
            # The step's latents for a live preview (a reference: no copy, no sync); the pipeline keeps no denoised.
            preview.record(kwargs.get("latents"))
            try:
                on_step(step + 1, pipe_.num_timesteps)
            except preview.StopSampling:  # the pipeline runs no further step, then decodes its latents
                pipe_._interrupt = True
        return kwargs

    if choice.sampler.loop_only:
        raise UsageError(f"--sampler: {choice.sampler.name} runs only in sdcli's own loop, which does not run "
                         "this model yet (SD 1.x/2.x only); choose another sampler (see `sdcli samplers`)")
    if request.subseed_strength and inputs is not None:
        raise UsageError(f"--subseed-strength: {choice.sampler.name} runs in the diffusers pipeline, which draws "
                         "its own start noise for an input image; use a sampler of sdcli's own loop (e.g. Euler a)")
    if not CondSchedule.is_plain(request.prompt, request.negative_prompt, request.step_count):
        raise UsageError(f"--sampler: {choice.sampler.name} ({request.mode}) runs in the diffusers pipeline, which "
                         "cannot change the prompt per step; prompt editing [a:b:N], [a|b] and AND need a "
                         "sampler of sdcli's own loop (e.g. 'Euler a', 'DPM++ 2M', 'DDIM')")
    if inputs is not None and int(request.step_count * request.init.strength) < 1:  # diffusers' own img2img count
        raise UsageError(f"--strength: {request.init.strength:g} x --steps {request.step_count} runs no step in the "
                         f"diffusers pipeline ({choice.sampler.name}, rounded down); raise --steps or --strength")
    embeds = encoder.pipeline_embeds(request.prompt, request.negative_prompt)
    pipe, n = model.pipe, len(seeds)
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    mode_args = inputs.pipeline_args(request.init.strength, n) if inputs else {"width": width, "height": height}
    if request.subseed_strength and inputs is None:
        first = image_noise(request, model, seeds, subseeds, width, height).first()
        mode_args["latents"] = first.to(embeds["prompt_embeds"].dtype)
    scheduler = pipe.scheduler
    if hasattr(scheduler, "noise_sampler_seed"):
        # DPM++ SDE draws Brownian-tree noise from its own seeds, not the generator: one per image.
        scheduler.noise_sampler_seed = list(seeds)
    with latent_content(model, request, inputs, generators):
        result = pipe(
            **{k: v.repeat(n, *[1] * (v.ndim - 1)) for k, v in embeds.items()},
            num_inference_steps=request.step_count,
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

