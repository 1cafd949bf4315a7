"""Reference WebUI txt2img/img2img (processing.py + KDiffusionSampler), see webui_ref.py.

`generate(pipe, **settings)` returns the WebUI's 8-bit images as numpy arrays for the
diffusers components of `pipe`. Settings are the WebUI's (labels as in its UI).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from tests.reference import kdiffusion_ref as K
from tests.reference import unipc_ref
from tests.reference.sdxl_ref import SDXLConditioner
from tests.reference.webui_ref import (
    CFGDenoiser,
    CLIPWrapper,
    CompVisDenoiser,
    CompVisTimestepsDenoiser,
    ImageRNG,
    LCMCompVisDenoiser,
    TorchHijack,
    get_learned_conditioning,
    get_multicond_learned_conditioning,
    reconstruct_cond_batch,
    reconstruct_multicond_batch,
)

# WebUI v1.10 samplers_k_diffusion: label -> (function, options)
SAMPLERS = {
    "DPM++ 2M": ("sample_dpmpp_2m", {"scheduler": "karras"}),
    "DPM++ SDE": ("sample_dpmpp_sde", {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True,
                                                  "solver_type": "heun"}),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", {"scheduler": "exponential", "discard_next_to_last_sigma": True,
                                             "brownian_noise": True}),
    "Euler a": ("sample_euler_ancestral", {"uses_ensd": True}),
    "Euler": ("sample_euler", {}),
    "LMS": ("sample_lms", {}),
    "Heun": ("sample_heun", {"second_order": True}),
    "DPM2": ("sample_dpm_2", {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    "DPM2 a": ("sample_dpm_2_ancestral", {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                          "uses_ensd": True, "second_order": True}),
    "DPM fast": ("sample_dpm_fast", {"uses_ensd": True}),
    "DPM adaptive": ("sample_dpm_adaptive", {"uses_ensd": True}),
    "Restart": ("restart_sampler", {"scheduler": "karras", "second_order": True}),
    "LCM": ("sample_lcm", {}),  # sd_samplers_lcm: with LCMCompVisDenoiser as the model wrap
}
# sd_samplers_timesteps: label -> function
TIMESTEP_SAMPLERS = {"DDIM": "ddim", "DDIM CFG++": "ddim_cfgpp", "PLMS": "plms", "UniPC": "unipc"}
SCHEDULER_KEYS = {"karras": "Karras", "exponential": "Exponential"}
EXTRA_PARAMS = {"sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
                "sample_heun": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
                "sample_dpm_2": ["s_churn", "s_tmin", "s_tmax", "s_noise"]}


def alphas_cumprod(config):
    """ldm's register_schedule: betas in float64, buffers in float32."""
    n = config.get("num_train_timesteps", 1000)
    start, end = config.get("beta_start", 0.00085), config.get("beta_end", 0.012)
    if config.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    return torch.tensor(np.cumprod(1.0 - betas.numpy(), axis=0), dtype=torch.float32)


def get_sigmas(model_wrap, sampler, scheduler, steps, sigma_min=0.0, sigma_max=0.0):
    _, options = SAMPLERS[sampler]
    discard = options.get("discard_next_to_last_sigma", False)
    steps += 1 if discard else 0
    name = scheduler if scheduler != "Automatic" else SCHEDULER_KEYS.get(options.get("scheduler"))
    m_sigma_min, m_sigma_max = model_wrap.sigmas[0].item(), model_wrap.sigmas[-1].item()
    if name is None:
        sigmas = model_wrap.get_sigmas(steps)
    else:
        function, _rho, need_inner_model = K.SCHEDULERS[name]
        kwargs = {"sigma_min": m_sigma_min, "sigma_max": m_sigma_max}
        if sigma_min != 0 and sigma_min != m_sigma_min:
            kwargs["sigma_min"] = sigma_min
        if sigma_max != 0 and sigma_max != m_sigma_max:
            kwargs["sigma_max"] = sigma_max
        if need_inner_model:
            kwargs["inner_model"] = model_wrap
        sigmas = function(n=steps, **kwargs, device="cpu")
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


@torch.no_grad()
def generate(pipe, prompt, negative="", *, steps=4, cfg=7.0, seed=1, width=64, height=64, batch_size=1,
             sampler="Euler a", scheduler="Automatic", clip_skip=1, emphasis="Original", rng="CPU", ensd=0,
             eta=None, subseed=None, subseed_strength=0.0, s_churn=0.0, s_tmin=0.0, s_tmax=0.0, s_noise=1.0,
             sigma_min=0.0, sigma_max=0.0, init_image=None, denoising_strength=0.75, mask_image=None,
             inpainting_fill="original", refiner=None, refiner_switch_at=0.8, latent_input=None, hires_steps=0,
             return_latents=False):
    funcname, options = SAMPLERS.get(sampler) or (TIMESTEP_SAMPLERS[sampler], {})
    func = unipc_ref.unipc if funcname == "unipc" else getattr(K, funcname)
    config = pipe.scheduler.config
    wrap = LCMCompVisDenoiser if sampler == "LCM" else CompVisDenoiser
    model_wrap = wrap(pipe.unet, alphas_cumprod(config), config.get("prediction_type") == "v_prediction")
    is_sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if is_sdxl:  # sd_models_xl: the conditioner knows the size and whether it encodes the negative prompt
        clip = SDXLConditioner(pipe, width, height, emphasis, clip_skip=clip_skip)
        clip_uc = clip.negative()
    else:
        clip = clip_uc = CLIPWrapper(pipe.tokenizer, pipe.text_encoder, clip_skip, emphasis)
    # processing: conds for the batch (prompt schedules over total steps: x2 for second order), the image RNG
    total_steps = steps * 2 if options.get("second_order") else steps
    c = get_multicond_learned_conditioning(clip, [prompt] * batch_size, total_steps)
    uc = get_learned_conditioning(clip_uc, [negative] * batch_size, total_steps)
    refiner_model = None
    if refiner is not None:  # what apply_refiner switches to: the refiner's model and setup_conds() for it
        refiner_clip = SDXLConditioner(refiner, width, height, emphasis, clip_skip=clip_skip)
        refiner_c = get_multicond_learned_conditioning(refiner_clip, [prompt] * batch_size, total_steps)
        refiner_uc = get_learned_conditioning(refiner_clip.negative(), [negative] * batch_size, total_steps)
        refiner_config = refiner.scheduler.config
        refiner_model = CompVisDenoiser(refiner.unet, alphas_cumprod(refiner_config),
                                        refiner_config.get("prediction_type") == "v_prediction")

    def with_refiner(denoiser, timesteps=False):
        if refiner_model is not None:
            model = CompVisTimestepsDenoiser(refiner_model) if timesteps else refiner_model
            denoiser.refiner = (model, lambda step: reconstruct_multicond_batch(refiner_c, step),
                                lambda step: reconstruct_cond_batch(refiner_uc, step), refiner_switch_at)
        return denoiser
    seeds = [seed + i for i in range(batch_size)]
    subseeds = [subseed + i for i in range(batch_size)] if subseed is not None else None
    image_rng = ImageRNG((4, height // 8, width // 8), seeds, subseeds, subseed_strength, rng, ensd)
    x = image_rng.next()
    init_latent = latent_input  # hires fix: sample_hr_pass hands sample_img2img the upscaled latents
    if init_image is not None:
        image = np.array(init_image).astype(np.float32) / 255.0
        image = torch.from_numpy(2.0 * np.moveaxis(image, 2, 0) - 1.0)[None].repeat(batch_size, 1, 1, 1)
        init_latent = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
    mask = nmask = image_conditioning = None
    if mask_image is not None:  # processing.StableDiffusionProcessingImg2Img.init
        latmask = mask_image.convert("RGB").resize((init_latent.shape[3], init_latent.shape[2]))
        latmask = np.moveaxis(np.array(latmask, dtype=np.float32), 2, 0) / 255
        latmask = np.around(latmask[0])
        latmask = np.tile(latmask[None], (4, 1, 1))
        mask = torch.asarray(1.0 - latmask)
        nmask = torch.asarray(latmask)
        if inpainting_fill == "latent noise":
            init_latent = init_latent * mask + ImageRNG(init_latent.shape[1:], seeds, source=rng).next() * nmask
        elif inpainting_fill == "latent nothing":
            init_latent = init_latent * mask
        if pipe.unet.config.in_channels == 9:  # inpainting_image_conditioning
            source_image = image
            conditioning_mask = torch.from_numpy(np.array(mask_image.convert("L"))).float() / 255
            conditioning_mask = torch.round(conditioning_mask[None, None])
            conditioning_image = torch.lerp(source_image, source_image * (1.0 - conditioning_mask), 1.0)
            conditioning_image = pipe.vae.encode(conditioning_image).latent_dist.mean * pipe.vae.config.scaling_factor
            conditioning_mask = torch.nn.functional.interpolate(conditioning_mask, size=init_latent.shape[-2:])
            conditioning_mask = conditioning_mask.expand(conditioning_image.shape[0], -1, -1, -1)
            image_conditioning = torch.cat([conditioning_mask, conditioning_image], dim=1)

    K.torch = TorchHijack(image_rng)
    K.sd_model_is_sdxl = is_sdxl
    if sampler in TIMESTEP_SAMPLERS:  # sd_samplers_timesteps.CompVisSampler
        try:
            timesteps = torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)
            eps_model = CompVisTimestepsDenoiser(model_wrap)
            if init_image is not None:
                t_enc = int(min(denoising_strength, 0.999) * steps)
                a = model_wrap.alphas_cumprod[timesteps[t_enc]]
                x = init_latent * torch.sqrt(a) + x * torch.sqrt(1 - a)
                timesteps = timesteps[:t_enc]
            kwargs = {"eta": eta if eta is not None else 0.0} if funcname.startswith("ddim") else {}
            if funcname == "unipc":
                kwargs = {"is_img2img": init_image is not None}
            denoiser = with_refiner(CFGDenoiser(eps_model, mask, init_latent, mask_before_denoising=True), True)
            samples = func(denoiser, x, timesteps, extra_args={
                "cond": lambda step: reconstruct_multicond_batch(c, step),
                "uncond": lambda step: reconstruct_cond_batch(uc, step), "cond_scale": cfg,
                "image_cond": image_conditioning}, **kwargs)
            if mask is not None:
                samples = samples * nmask + init_latent * mask
        finally:
            K.torch, K.sd_model_is_sdxl = K.real_torch, False
        return decode(refiner if denoiser.switched else pipe, samples)  # p.sd_model: the loaded one
    try:
        if init_latent is None:
            sigmas = get_sigmas(model_wrap, sampler, scheduler, steps, sigma_min, sigma_max)
            x = x * sigmas[0]
            sched, start = sigmas, x
        else:
            t_enc = int(min(denoising_strength, 0.999) * steps)
            if hires_steps:  # setup_img2img_steps given a step count (the hires pass): exactly that many run
                steps, t_enc = int(hires_steps / min(denoising_strength, 0.999)), hires_steps - 1
            sigmas = get_sigmas(model_wrap, sampler, scheduler, steps, sigma_min, sigma_max)
            sched = sigmas[steps - t_enc - 1:]
            start = init_latent + x * sched[0]
            x = init_latent
        kwargs = {}
        parameters = inspect.signature(func).parameters
        for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax or float("inf")),
                            ("s_noise", s_noise)):
            if name in EXTRA_PARAMS.get(funcname, []) and name in parameters:
                kwargs[name] = value
        if "eta" in parameters:
            kwargs["eta"] = eta if eta is not None else 1.0
        if "sigma_min" in parameters:  # DPM fast / adaptive: a sigma range, not the schedule
            if init_latent is None:
                kwargs["sigma_min"], kwargs["sigma_max"] = model_wrap.sigmas[0].item(), model_wrap.sigmas[-1].item()
                if "n" in parameters:
                    kwargs["n"] = steps
            else:
                kwargs["sigma_min"], kwargs["sigma_max"] = sched[-2], sched[0]
                if "n" in parameters:
                    kwargs["n"] = len(sched) - 1
        if options.get("brownian_noise"):
            sigma_lo, sigma_hi = sigmas[sigmas > 0].min(), sigmas.max()
            kwargs["noise_sampler"] = K.BrownianTreeNoiseSampler(x, sigma_lo, sigma_hi, seed=seeds)
        if options.get("solver_type") == "heun":
            kwargs["solver_type"] = "heun"
        denoiser = with_refiner(CFGDenoiser(model_wrap, mask, init_latent))
        where = {} if "sigma_min" in parameters else {"sigmas": sched}
        samples = func(denoiser, start, **where, extra_args={
            "cond": lambda step: reconstruct_multicond_batch(c, step),
            "uncond": lambda step: reconstruct_cond_batch(uc, step), "cond_scale": cfg,
            "image_cond": image_conditioning}, **kwargs)
        if mask is not None:
            samples = samples * nmask + init_latent * mask
    finally:
        K.torch, K.sd_model_is_sdxl = K.real_torch, False
    if return_latents:
        return samples
    return decode(refiner if denoiser.switched else pipe, samples)  # p.sd_model: the loaded one


def decode(pipe, samples):
    images = []
    for latent in samples:
        decoded = pipe.vae.decode(latent[None] / pipe.vae.config.scaling_factor).sample[0]
        x_sample = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)
        x_sample = 255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)
        images.append(x_sample.astype(np.uint8))
    return images
