"""One batch through sdcli's own loop (sampling.loop): the WebUI's sigmas, samplers, CFG, noise, inpainting inputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdcli.execution.latents import decode, encode_image, encode_pixels
from sdcli.execution.stages import StepCallback
from sdcli.families.base import PromptEncoder
from sdcli.io.images import PreparedInputs
from sdcli.models.loaded import LoadedModel
from sdcli.request.generation import GenerationRequest, choice_key
from sdcli.sampling import preview
from sdcli.sampling.samplers import SamplerChoice


def sampling_options(request: GenerationRequest) -> Any:
    """The request's WebUI sampler settings for the loop."""
    from sdcli.sampling.loop import SamplingOptions

    return SamplingOptions(eta=request.eta, s_churn=request.s_churn, s_tmin=request.s_tmin, s_tmax=request.s_tmax,
                           s_noise=request.s_noise, sigma_min=request.sigma_min, sigma_max=request.sigma_max)


def image_noise(request: GenerationRequest, model: LoadedModel, seeds: list[int], subseeds: list[int | None],
                width: int, height: int) -> Any:
    """The image RNG of a batch at width x height: per-image generators, variation seeds, ENSD."""
    from sdcli.sampling.rng import ImageNoise

    shape = model.family.latent.noise_shape(width, height)
    return ImageNoise(choice_key(request.rng), shape, seeds, model.network.device, subseeds=subseeds,
                      subseed_strength=request.subseed_strength, ensd=request.ensd)


def cond_schedule(request: GenerationRequest, choice: SamplerChoice, encoder: PromptEncoder) -> Any:
    """Prompt editing, alternation and AND over the run's denoiser calls (x2 for second-order samplers)."""
    from sdcli.conditioning.schedule import CondSchedule, prompt_schedule

    calls = request.step_count * (2 if choice.sampler.second_order else 1)
    all_empty = all(t == "" for _, t in prompt_schedule(request.negative_prompt, calls))
    negative = encoder.negative_encoder(all_empty)
    if request.zero_negative:  # ComfyUI's ConditioningZeroOut
        negative = zeroed_by(negative)
    return CondSchedule.build(request.prompt, request.negative_prompt, calls, encoder.encode, negative,
                              literal=choice_key(request.emphasis) == "comfy")


def zeroed_by(encode: Any) -> Any:
    """`encode` with its conditioning zeroed (cond.Conditioning.zeroed)."""
    return lambda text: encode(text).zeroed()


def image_schedules(request: GenerationRequest, choice: SamplerChoice, encoder: PromptEncoder,
                    prompts: list[tuple[str, str]]) -> list[tuple[Any, Any]]:
    """Each image's (conds_at, uncond_at) for a batch of several prompt pairs; each distinct pair encoded once."""
    schedules: dict[tuple[str, str], Any] = {}
    for pair in prompts:
        if pair not in schedules:
            schedules[pair] = cond_schedule(replace(request, prompt=pair[0], negative_prompt=pair[1]), choice,
                                            encoder)
    return [(schedules[pair].conds_at, schedules[pair].uncond_at) for pair in prompts]


def own_batch(request: GenerationRequest, model: LoadedModel, choice: SamplerChoice, encoder: PromptEncoder,
              inputs: PreparedInputs | None, seeds: list[int], subseeds: list[int | None], width: int,
              height: int, on_step: StepCallback | None, refine: Any = None, hires: Any = None,
              control: Any = None, control_input: Any = None,
              prompts: list[tuple[str, str]] | None = None, schedule_tokens: int | None = None) -> list[Any]:
    """One batch through sdcli's loop: WebUI sigmas, samplers, CFG and noise; `prompts`: each image's own
    (prompt, negative) pair as the encoder sees it, for a batch of several requests' images (default: the
    request's for every image; not with `refine` or `hires`); `refine` (OwnRefiner):
    the WebUI's in-loop refiner switch; `hires` (execution.hires.HiresStage): the hires fix pass; `control`
    (controlnet.hook.ControlHook): ControlNet units; `control_input` ([1, C, h, w]): a control model's extra
    input (Flux Control: the control image's latent), fed beside the latent at every call; `schedule_tokens`: the
    image tokens an image-sized schedule is sized for, where not the latent's (an edit's EditInputs')."""
    from sdcli.sampling.loop import sample
    from sdcli.sampling.refiner import Refiner

    denoiser = loop_denoiser(request, model, choice, encoder)
    denoiser.param.schedule_tokens = schedule_tokens
    if prompts is not None:
        if refine is not None or hires is not None:
            raise ValueError("a batch of several prompts runs without a refiner or hires pass")
        denoiser.image_conds = image_schedules(request, choice, encoder, prompts)
    if refine is not None:
        refined = cond_schedule(request, choice, refine.encoder)
        denoiser.refiner = Refiner(refine.model.network, refined.conds_at, refined.uncond_at, request.refiner_switch)
    if control is not None:
        denoiser.control, on_step = control, control.follow(on_step)
    noise = image_noise(request, model, seeds, subseeds, width, height)
    init = encode_image(model, inputs.image, len(seeds)) if inputs is not None else None
    if inputs is not None and inputs.mask is not None:
        denoiser.masking = inpaint_masking(model, request, inputs, init, noise)
        init = denoiser.masking.init_latent
    if control_input is not None:
        from sdcli.sampling.denoiser import Masking

        extra = control_input.repeat(len(seeds), 1, 1, 1)
        if denoiser.masking is None:
            denoiser.masking = Masking(init_latent=init, image_cond=extra)
        else:
            denoiser.masking.image_cond = extra
    schedule, t_enc = request.img2img_walk if init is not None else (request.step_count, None)
    latents = sample(choice, denoiser, noise, schedule, options=sampling_options(request), init_latent=init,
                     t_enc=t_enc, on_step=on_step)
    if denoiser.masking is not None and denoiser.masking.mask is not None:  # the kept area: the input's latent
        keep = denoiser.masking.mask
        latents = latents * (1 - keep) + denoiser.masking.init_latent * keep
    if hires is not None and not preview.job_stopped():  # an interrupted first pass comes back as it is
        latents = hires.run(model, latents, seeds, subseeds, on_step)
    return decode(refine.model if denoiser.switched else model, latents)  # the WebUI decodes with the model loaded


def loop_denoiser(request: GenerationRequest, model: LoadedModel, choice: SamplerChoice,
                  encoder: PromptEncoder) -> Any:
    """The loop's CFG denoiser for `request` (its prompts through `encoder`) on the model's parameterisation."""
    from sdcli.sampling.refiner import RefinedDenoiser

    schedule = cond_schedule(request, choice, encoder)
    param = model.parameterisation(request.prediction_type, request.shift, request.model_sampling)
    if choice_key(request.rng) == "comfy":  # ComfyUI's noise, started and timed as its model sampling does
        param = param.comfy()
    denoiser = RefinedDenoiser(model.network, param, schedule.conds_at, schedule.uncond_at, request.cfg_scale)
    denoiser.skip_uncond_at_1 = model.family.capabilities.skip_uncond_at_cfg1
    denoiser.cfg_norm = request.cfg_norm
    return denoiser


def inpaint_masking(model: LoadedModel, request: GenerationRequest, inputs: PreparedInputs, init: Any,
                    noise: Any) -> Any:
    """The WebUI's inpainting inputs: a rounded latent mask, --masked-content in latent space, and the
    inpainting network's extra input (mask + latent of the image with the masked area blanked)."""
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
    if model.detected.inpainting:
        full = torch.from_numpy(np.around(np.asarray(inputs.mask.convert("L"), dtype=np.float32) / 255))[None, None]
        unit = torch.from_numpy(np.asarray(inputs.image.convert("RGB"), dtype=np.float32) / 255.0)
        source = (2.0 * unit - 1.0).permute(2, 0, 1)[None]
        masked_latent = encode_pixels(model, source * (1.0 - full))
        image_cond = model.family.inpainting_input(full, masked_latent).repeat(n, 1, 1, 1)
    return Masking(init_latent=init, mask=keep, image_cond=image_cond)


def seed_noise(noise: Any) -> Any:
    """The start noise of a batch's seeds, from fresh generators (the image RNG itself is left untouched)."""
    from sdcli.sampling.rng import ImageNoise

    return ImageNoise(noise.source, noise.shape, noise.seeds, noise.device).first()



def control_input(model: LoadedModel, request: GenerationRequest, control: Any, size: tuple[int, int],
                  crop: Any) -> Any:
    """A control model's extra input for a run at `size`: its control image (controlnet.plan.ControlPlan.own)
    through the VAE, as diffusers' FluxControlPipeline encodes it (the posterior's mean here); None for other
    models. A control model without a control image, or a control image for a model that takes none, is refused."""
    from sdcli.errors import UsageError

    own = None if control is None else control.plan.own
    family = model.family
    channels = family.capabilities.control_channels
    takes = channels is not None and model.network.in_channels == channels
    if takes and own is None:
        raise UsageError(f"--control-image: a {family.label} model with a control input (Flux Control, or a BFL "
                         "control LoRA) needs a control image: give --control-image IMG (--preprocessor canny for a "
                         "photo; a depth map with --preprocessor none)")
    if own is None:
        return None
    if not takes:
        raise UsageError("--control-image: without --controlnet it is the control input of a Flux Control model "
                         f"or a BFL control LoRA; this {family.label} model has none (give --controlnet MODEL)")
    if request.hires:
        raise UsageError("--hires: not with a Flux Control model's control image (the hires pass has no control "
                         "input)")
    return family.control_input(encode_pixels(model, control.plan.own_hint(size, crop)))
