"""An independent reference of Forge's Flux.1 sampling path, for the parity tests.

Transcribed from lllyasviel/stable-diffusion-webui-forge (commit dfdcbab, June 2025; diffusers 0.31 pinned):
backend/modules/k_prediction.py (PredictionFlux), backend/diffusion_engine/flux.py, backend/modules/k_model.py,
backend/nn/flux.py (IntegratedFluxTransformer2DModel.forward: packing, ids), backend/sampling/sampling_function.py
and condition.py (CFG, batching), modules/sd_samplers_cfg_denoiser.py, modules/sd_samplers_kdiffusion.py,
modules/sd_schedulers.py, modules/sd_samplers_lcm.py, modules_forge/alter_samplers.py, k_diffusion/external.py
(ForgeScheduleLinker), k_diffusion/sampling.py (the _RF ancestral forms), modules/processing.py and rng.py.
The k-diffusion samplers Forge shares with the WebUI come from kdiffusion_ref.py; prompts from forge_flux_text_ref.
The network is a diffusers FluxTransformer2DModel; packing is done here, Forge's way. Imports nothing from sdcli.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from einops import rearrange

from tests.reference import forge_flux_text_ref as T
from tests.reference import kdiffusion_ref as K
from tests.reference.forge_flux_samplers_ref import NOT_TRANSCRIBED, SAMPLERS
from tests.reference.webui_ref import ImageRNG, LCMCompVisDenoiser, TorchHijack

# ---------------------------------------------------------------- backend/modules/k_prediction.py: PredictionFlux


def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    """diffusers 0.31 pipeline_flux.calculate_shift, which Forge's PredictionFlux calls with seq_len 4096."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def time_shift(mu, sigma, t):
    """diffusers 0.31 FlowMatchEulerDiscreteScheduler.time_shift(None, mu, sigma, t) as Forge calls it."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


class PredictionFlux:
    """sigmas[i] = time_shift(mu, 1, (i + 1) / 10000); timestep(sigma) = sigma and sigma(t) = t (identity:
    the table is NOT used to map timesteps, unlike ComfyUI's ModelSamplingFlux); CONST parameterisation."""

    def __init__(self, seq_len=4096, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15,
                 pseudo_timestep_range=10000, mu=None):
        self.mu = calculate_shift(seq_len, base_seq_len, max_seq_len, base_shift, max_shift) if mu is None else mu
        t = torch.arange(1, pseudo_timestep_range + 1, 1) / pseudo_timestep_range
        self.sigmas = time_shift(self.mu, 1.0, t)

    def timestep(self, sigma):
        return sigma

    def sigma(self, timestep):
        return timestep

    def calculate_input(self, sigma, noise):
        return noise

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))

    def noise_scaling(self, sigma, noise, latent_image):
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent):  # defined, never called on Forge's k-diffusion path
        return latent / (1.0 - sigma)

    def percent_to_sigma(self, percent):
        return 1.0 if percent <= 0.0 else 0.0 if percent >= 1.0 else 1.0 - percent


def flux_predictor(guidance_embeds, mu=None):
    """Flux.__init__: schnell (repo guess FluxSchnell = no guidance embedder) mu=1.0; dev calculate_shift(4096)=1.15."""
    if mu is not None:
        return PredictionFlux(mu=mu)
    return PredictionFlux() if guidance_embeds else PredictionFlux(mu=1.0)


class ForgeScheduleLinker:
    """k_diffusion/external.py: the sampler-facing wrapper (schedules only; the denoiser call bypasses it)."""

    def __init__(self, predictor):
        self.predictor, self.sigmas = predictor, predictor.sigmas

    def get_sigmas(self, n):  # 'Uniform' / Automatic without a default: linspace(9999, 0, n) read as sigmas
        return K.append_zero(self.t_to_sigma(torch.linspace(len(self.sigmas) - 1, 0, n)))

    def sigma_to_t(self, sigma):
        return self.predictor.timestep(sigma)

    def t_to_sigma(self, t):
        return self.predictor.sigma(t)


# ---------------------------------------------------------------- modules/sd_schedulers.py


def turbo_scheduler(n, sigma_min, sigma_max, inner_model, device):
    timesteps = torch.flip(torch.arange(1, n + 1) * float(1000.0 / n) - 1, (0,)).round().long().clip(0, 999)
    sigmas = inner_model.predictor.sigma(timesteps)  # identity on Flux: sigmas 999, ... (unsound)
    return torch.cat([sigmas, sigmas.new_zeros([1])]).float()


def gits_sigmas(n, sigma_min, sigma_max, device):
    """get_align_your_steps_sigmas_GITS with the SD1.5 list (shared.sd_model.is_sdxl is False for Flux)."""
    sigmas = [14.615, 4.617, 2.507, 1.236, 0.702, 0.402, 0.240, 0.156, 0.104, 0.094, 0.029]
    if n == len(sigmas):
        return torch.FloatTensor(sigmas + [0.0])
    ys = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(sigmas)), np.log(sigmas[::-1]))
    return torch.FloatTensor(np.append(np.exp(ys)[::-1].copy(), [0.0]))


# label -> (function, default_rho, need_inner_model); "Automatic" is None. Sound on Flux: Simple, Normal, SGM Uniform,
# DDIM, Beta, Karras, Exponential, Polyexponential, KL Optimal. Unsound: Uniform (and Automatic for samplers with
# no default scheduler), Turbo (sigmas up to 9999/999), Align Your Steps / 11 / GITS (SD1.5 sigmas up to 14.6).
SCHEDULERS = {
    "Automatic": None,
    "Uniform": (K.uniform, -1, True),
    "Karras": (K.get_sigmas_karras, 7.0, False),
    "Exponential": (K.get_sigmas_exponential, -1, False),
    "Polyexponential": (K.get_sigmas_polyexponential, 1.0, False),
    "SGM Uniform": (K.sgm_uniform, -1, True),
    "KL Optimal": (K.kl_optimal, -1, False),
    "Align Your Steps": (K.get_align_your_steps_sigmas, -1, False),
    "Simple": (K.simple_scheduler, -1, True),
    "Normal": (K.normal_scheduler, -1, True),
    "DDIM": (K.ddim_scheduler, -1, True),
    "Beta": (K.beta_scheduler, -1, True),
    "Turbo": (turbo_scheduler, -1, True),
    "Align Your Steps GITS": (gits_sigmas, -1, False),
    "Align Your Steps 11": (K.get_align_your_steps_sigmas, -1, False),
}
SCHEDULER_KEYS = {"karras": "Karras", "exponential": "Exponential"}



def get_sigmas(model_wrap, options, scheduler, steps):
    """KDiffusionSampler.get_sigmas with default settings (no sigma min/max/rho overrides)."""
    discard = options.get("discard_next_to_last_sigma", False)
    steps += 1 if discard else 0
    name = scheduler if scheduler != "Automatic" else SCHEDULER_KEYS.get(options.get("scheduler"))
    entry = SCHEDULERS.get(name) if name else None
    if entry is None:
        sigmas = model_wrap.get_sigmas(steps)
    else:
        function, _rho, need_inner_model = entry
        kwargs = {"sigma_min": model_wrap.sigmas[0].item(), "sigma_max": model_wrap.sigmas[-1].item()}
        if need_inner_model:
            kwargs["inner_model"] = model_wrap
        sigmas = function(n=steps, **kwargs, device="cpu")
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


# ---------------------------------------------------------------- the network: k_model.KModel + nn/flux.py forward


class FluxModel:
    """KModel.apply_model around IntegratedFluxTransformer2DModel.forward, with a diffusers FluxTransformer2DModel
    as the inner network (diffusers multiplies timestep and guidance by 1000, as Forge's timestep_embedding does)."""

    def __init__(self, transformer, predictor):
        self.transformer, self.predictor = transformer, predictor

    def apply_model(self, x, sigma, c_crossattn, y, guidance=None, c_concat=None):
        xc = self.predictor.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat], dim=1)
        dtype = self.transformer.dtype
        t = self.predictor.timestep(sigma).float()
        guidance = guidance.to(dtype) if guidance is not None else None
        out = self.forward(xc.to(dtype), t, c_crossattn.to(dtype), y.to(dtype), guidance).float()
        return self.predictor.calculate_denoised(sigma, out, x)

    def forward(self, x, timestep, context, y, guidance=None):
        """Pad to even (circular), 2x2 patches as (c ph pw) per token, ids (0, row, col), txt ids 0; unpack, crop."""
        _, _, h, w = x.shape
        x = torch.nn.functional.pad(x, (0, (2 - w % 2) % 2, 0, (2 - h % 2) % 2), mode="circular")
        img = rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
        h_len, w_len = (h + 1) // 2, (w + 1) // 2
        img_ids = torch.zeros((h_len, w_len, 3), dtype=x.dtype)
        img_ids[..., 1] = img_ids[..., 1] + torch.linspace(0, h_len - 1, steps=h_len, dtype=x.dtype)[:, None]
        img_ids[..., 2] = img_ids[..., 2] + torch.linspace(0, w_len - 1, steps=w_len, dtype=x.dtype)[None, :]
        txt_ids = torch.zeros((context.shape[1], 3), dtype=x.dtype)  # diffusers takes ids without the batch axis
        out = self.transformer(hidden_states=img, encoder_hidden_states=context, pooled_projections=y,
                               timestep=timestep, img_ids=img_ids.reshape(-1, 3), txt_ids=txt_ids,
                               guidance=guidance if self.transformer.config.guidance_embeds else None,
                               return_dict=False)[0]
        return rearrange(out, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h_len, w=w_len, ph=2, pw=2)[:, :, :h, :w]


# ---------------------------------------------------------------- backend/sampling: sampling_function, condition.py


def repeat_to_batch_size(tensor, batch_size):
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        return tensor.repeat([math.ceil(batch_size / tensor.shape[0])] + [1] * (tensor.ndim - 1))[:batch_size]
    return tensor


def _can_concat(a, b):
    """cond_equal_size: same keys; crossattn may differ in length if lcm(lengths) / min <= 4; others same shape."""
    if a.keys() != b.keys():
        return False
    for k in a:
        s1, s2 = a[k].shape, b[k].shape
        if s1 != s2 and (k != "c_crossattn" or s1[0] != s2[0] or s1[2] != s2[2]
                         or math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) > 4):
            return False
    return True


def _concat(conds):
    """cond_cat: crossattn repeated along tokens to the lcm of the lengths, then cat; other keys cat."""
    out = {}
    for k in conds[0]:
        if k == "c_crossattn":
            n = math.lcm(*[c[k].shape[1] for c in conds])
            out[k] = torch.cat([c[k].repeat(1, n // c[k].shape[1], 1) for c in conds])
        else:
            out[k] = torch.cat([c[k] for c in conds])
    return out


def calc_cond_uncond_batch(model, items, x, sigma):
    """items: [(model conds, strength, is_uncond)]. Everything that can run together runs in ONE call, in reverse
    order (uncond first when present); each result weighted by its strength and divided by the summed weights."""
    out = {False: torch.zeros_like(x), True: torch.zeros_like(x)}
    count = {False: torch.ones_like(x) * 1e-37, True: torch.ones_like(x) * 1e-37}
    to_run = [({k: repeat_to_batch_size(v, x.shape[0]) for k, v in conds.items()}, strength, uncond)
              for conds, strength, uncond in items]
    while to_run:
        first = to_run[0][0]
        batch = [to_run.pop(i) for i in reversed([i for i, r in enumerate(to_run) if _can_concat(r[0], first)])]
        output = model.apply_model(torch.cat([x] * len(batch)), torch.cat([sigma] * len(batch)),
                                   **_concat([b[0] for b in batch])).chunk(len(batch))
        for o, (_, strength, uncond) in zip(output, batch, strict=True):
            mult = torch.ones_like(x) * strength
            out[uncond] += o * mult
            count[uncond] += mult
    return out[False] / count[False], out[True] / count[True]


def sampling_function(model, x, sigma, cond, conds_list, uncond, cond_scale, image_cond=None):
    """sampling_function + sampling_function_inner: AND parts as weighted conds (compile_weighted_conditions),
    the negative skipped when cond_scale is close to 1; cfg = u + (c - u) * scale (* sum of AND weights if != 1)."""
    def model_conds(c):
        conds = {"c_crossattn": c["crossattn"], "y": c["vector"]}
        if "guidance" in c:
            conds["guidance"] = c["guidance"]
        if isinstance(image_cond, torch.Tensor) and image_cond.shape[0] == x.shape[0] \
                and image_cond.shape[2:] == x.shape[2:]:
            conds["c_concat"] = image_cond
        return conds

    items = []
    for column in zip(*conds_list, strict=True):  # transposed: one cond per AND part, rows = the batch
        indices = [i for i, _ in column]
        items.append((model_conds({k: v[indices] for k, v in cond.items()}), column[-1][1], False))
    edit_strength = sum(strength for _, strength, _ in items)
    if not math.isclose(cond_scale, 1.0) and uncond is not None:
        items.append((model_conds(uncond), 1.0, True))
    cond_pred, uncond_pred = calc_cond_uncond_batch(model, items, x, sigma)
    if not math.isclose(edit_strength, 1.0):
        return uncond_pred + (cond_pred - uncond_pred) * cond_scale * edit_strength
    return uncond_pred + (cond_pred - uncond_pred) * cond_scale


class CFGDenoiser:
    """sd_samplers_cfg_denoiser.CFGDenoiser.forward (no mask, no NGMS, no skip-early-CFG: defaults)."""

    def __init__(self, model):
        self.model, self.step = model, 0

    def __call__(self, x, sigma, cond, uncond, cond_scale, image_cond=None):
        conds_list, c = T.reconstruct_multicond_batch(cond, self.step)
        uc = T.reconstruct_cond_batch(uncond, self.step) if uncond is not None else None
        denoised = sampling_function(self.model, x, sigma, c, conds_list, uc, cond_scale, image_cond)
        self.step += 1
        return denoised


# ---------------------------------------------------------------- processing.py + KDiffusionSampler.sample(_img2img)


@torch.no_grad()
def sample_flux(transformer, t5, t5_tokenizer, clip, clip_tokenizer, vae, prompt, negative="", seeds=(1,),
                width=64, height=64, steps=4, sampler="Euler", schedule="Simple", cfg=1.0, distilled_cfg=3.5,
                mu=None, init_latent=None, strength=0.75, rng="CPU", emphasis="Original", eta=None,
                image_cond=None):
    """Forge's Flux latents (process_in space, [len(seeds), 16, H/8, W/8]) for these settings; decode with
    forge_flux_text_ref.decode_first_stage. init_latent (process_in space) makes it img2img at `strength`."""
    if sampler in NOT_TRANSCRIBED or sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: {NOT_TRANSCRIBED.get(sampler, 'not in Forge')}")
    func, options = SAMPLERS[sampler]
    predictor = flux_predictor(transformer.config.guidance_embeds, mu)
    model_wrap = (LCMCompVisDenoiser(None, 1.0 / (predictor.sigmas ** 2.0 + 1.0), False) if sampler == "LCM"
                  else ForgeScheduleLinker(predictor))
    # 1. conds (prompt schedules over total steps: x2 for second-order samplers); no negative at CFG 1
    conditioner = T.FluxConditioner(t5, t5_tokenizer, clip, clip_tokenizer, transformer.config.guidance_embeds,
                                    distilled_cfg, emphasis)
    total_steps = steps * 2 if options.get("second_order") else steps
    c = T.get_multicond_learned_conditioning(conditioner, [prompt] * len(seeds), total_steps)
    uc = None if cfg == 1 else T.get_learned_conditioning(conditioner, [negative] * len(seeds), total_steps)
    # 2. noise: one CPU generator per image seeded seed+i, shape (16, H/8, W/8); k-diffusion's randn_like from it
    channels = vae.config.latent_channels if vae is not None else 16
    image_rng = ImageRNG((channels, height // 8, width // 8), list(seeds), source=rng)
    noise = image_rng.next()
    K.torch = TorchHijack(image_rng)
    try:
        sigmas = get_sigmas(model_wrap, options, schedule, steps)
        if init_latent is None:
            sched = sigmas
            x = start = predictor.noise_scaling(sigmas[0], noise, torch.zeros_like(noise))
        else:  # setup_img2img_steps: t_enc = int(min(strength, 0.999) * steps); sigmas[steps - t_enc - 1:]
            t_enc = int(min(strength, 0.999) * steps)
            sched = sigmas[steps - t_enc - 1:]
            x, start = init_latent, predictor.noise_scaling(sched[0], noise, init_latent)
        # 3. sampler arguments as KDiffusionSampler.initialize / sample pass them
        parameters = inspect.signature(func).parameters
        kwargs = {"eta": eta if eta is not None else 1.0} if "eta" in parameters else {}
        if "sigma_min" in parameters:  # DPM fast / adaptive
            if init_latent is None:
                kwargs.update(sigma_min=model_wrap.sigmas[0].item(), sigma_max=model_wrap.sigmas[-1].item())
                kwargs.update({"n": steps} if "n" in parameters else {})
            else:
                kwargs.update(sigma_min=sched[-2], sigma_max=sched[0])
                kwargs.update({"n": len(sched) - 1} if "n" in parameters else {})
        if "sigmas" in parameters:
            kwargs["sigmas"] = sched
        if options.get("brownian_noise"):  # create_noise_sampler: over the FULL schedule, one tree per seed
            kwargs["noise_sampler"] = K.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(),
                                                                 seed=list(seeds))
        if options.get("solver_type") == "heun":
            kwargs["solver_type"] = "heun"
        denoiser = CFGDenoiser(FluxModel(transformer, predictor))
        return func(denoiser, start, extra_args={"cond": c, "uncond": uc, "cond_scale": cfg,
                                                 "image_cond": image_cond}, **kwargs)
    finally:
        K.torch = K.real_torch
