"""ComfyUI's noise parameterisations (comfy/model_sampling.py), transcribed for the parity tests.

Written from ComfyUI's formulas, not from sdcli: EPS and V_PREDICTION with sigma_data 1 on
ModelSamplingDiscrete's table (linear-in-sqrt betas), CONST (rectified flow) on
ModelSamplingDiscreteFlow's shifted table and on ModelSamplingFlux's; and the one sampler of ComfyUI's own
that a template runs (comfy/k_diffusion/sampling.py res_multistep). Imports no sdcli code.
Per-row sigmas are shaped [batch] and broadcast over [batch, C, H, W] as ComfyUI reshapes them.
"""

from __future__ import annotations

import math

import torch


def _rows(sigma, like):
    return sigma.view(sigma.shape[:1] + (1,) * (like.ndim - 1))


class EPS:
    sigma_data = 1.0

    def calculate_input(self, sigma, noise):
        return noise / (_rows(sigma, noise) ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * _rows(sigma, model_output)

    def noise_scaling(self, sigma, noise, latent_image):
        return noise * _rows(sigma, noise) + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class V_PREDICTION(EPS):
    def calculate_denoised(self, sigma, model_output, model_input):
        s, d = _rows(sigma, model_output), self.sigma_data
        return model_input * d ** 2 / (s ** 2 + d ** 2) - model_output * s * d / (s ** 2 + d ** 2) ** 0.5


class CONST:
    def calculate_input(self, sigma, noise):
        return noise

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * _rows(sigma, model_output)

    def noise_scaling(self, sigma, noise, latent_image):
        s = _rows(sigma, noise)
        return s * noise + (1.0 - s) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - _rows(sigma, latent))


def discrete_sigmas(linear_start=0.00085, linear_end=0.012, timesteps=1000):
    """ModelSamplingDiscrete: SD's "linear" schedule (linear in sqrt(beta)), sigma = sqrt((1 - a) / a)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


class DiscreteFlow:
    """ModelSamplingDiscreteFlow: timestep = sigma * multiplier; sigma = SNR time shift of t / multiplier."""

    def __init__(self, shift=1.0, multiplier=1000, timesteps=1000):
        self.shift, self.multiplier = shift, multiplier
        self.sigmas = self.sigma((torch.arange(1, timesteps + 1, 1) / timesteps) * multiplier)

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        t = timestep / self.multiplier
        if self.shift == 1.0:
            return t
        return self.shift * t / (1 + (self.shift - 1) * t)


class Flux:
    """ModelSamplingFlux: timestep = sigma; sigma = flux_time_shift(shift, 1, t)."""

    def __init__(self, shift=1.15, timesteps=10000):
        self.shift = shift
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, 1) / timesteps)

    def timestep(self, sigma):
        return sigma

    def sigma(self, timestep):
        mu, power = self.shift, 1.0
        return math.exp(mu) / (math.exp(mu) + (1 / timestep - 1) ** power)


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
               model_sampling=None):
    """comfy/k_diffusion/sampling.py sample_lcm: denoise, then the model's noise_scaling to the next sigma
    (CONST: (1 - s) x0 + s noise); `noise_sampler(sigma, sigma_next)` gives the fresh noise."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        x = denoised
        if sigmas[i + 1] > 0:
            x = model_sampling.noise_scaling(sigmas[i + 1] * s_in, noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


# ---------------------------------------------------------------- the KSampler path
# (nodes.py KSampler -> comfy/sample.py -> comfy/samplers.py KSampler/CFGGuider -> k-diffusion), for an SD1 eps
# model in fp32 on the CPU.


class DiscreteModelSampling:
    """ModelSamplingDiscrete: the eps table; timestep(sigma) is the NEAREST training step (argmin in log sigma),
    sigma(t) interpolates log sigma between steps."""

    def __init__(self, sigmas):
        self.sigmas = sigmas
        self.log_sigmas = sigmas.log()
        self.sigma_min, self.sigma_max = sigmas[0], sigmas[-1]

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


def normal_scheduler(ms, steps):
    """comfy/samplers.py normal_scheduler (not sgm): timesteps evenly from sigma_max's to sigma_min's, then 0."""
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    append = True
    if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
        steps += 1
        append = False
    timesteps = torch.linspace(float(start), float(end), steps)
    sigmas = [float(ms.sigma(ts)) for ts in timesteps]
    return torch.FloatTensor(sigmas + ([0.0] if append else []))


def karras_scheduler(ms, steps, rho=7.0):
    """k-diffusion get_sigmas_karras on the model's sigma_min/sigma_max, as ComfyUI's "karras"."""
    ramp = torch.linspace(0, 1, steps)
    lo, hi = float(ms.sigma_min) ** (1 / rho), float(ms.sigma_max) ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1)])


SD15_SCALE_FACTOR = 0.18215  # comfy/latent_formats.py SD15: process_in multiplies the VAE's latent by it


def load_image(path):
    """nodes.py LoadImage: the file upright (ImageOps.exif_transpose), converted to RGB (alpha dropped, not
    flattened), as [1, H, W, 3] floats in [0, 1]."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        rgb = ImageOps.exif_transpose(opened).convert("RGB")
    return torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None]


def vae_encode(vae, pixels):
    """nodes.py VAEEncode -> comfy/sd.py VAE.encode: pixels cropped to a multiple of 8 about their centre
    (vae_encode_crop_pixels), channels first, image * 2 - 1, the encoder's posterior mode (ComfyUI stopped
    sampling it in PR 8705); `vae` is the network (a diffusers AutoencoderKL here)."""
    h, w = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
    top, left = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
    pixels = pixels[:, top:top + h, left:left + w, :3].movedim(-1, 1)
    with torch.no_grad():
        return vae.encode(pixels * 2.0 - 1.0).latent_dist.mode().float()


def ksampler_sigmas(ms, scheduler, steps, denoise=1.0, start_step=None):
    """KSampler.set_steps: at denoise < 1 the schedule of int(steps / denoise) steps, its last steps + 1 sigmas;
    KSamplerAdvanced (denoise 1) with start_at_step: the steps' schedule from that index."""
    schedule = normal_scheduler if scheduler == "normal" else karras_scheduler
    if denoise is None or denoise > 0.9999:
        sigmas = schedule(ms, steps)
    else:
        sigmas = schedule(ms, int(steps / denoise))[-(steps + 1):]
    if start_step is not None and start_step < len(sigmas) - 1:
        sigmas = sigmas[start_step:]
    return sigmas


def ksampler(unet, cond, uncond, *, seed, steps, cfg, sampler_name="euler", scheduler="normal", width=64, height=64,
             batch_size=1, latent_image=None, denoise=1.0, start_step=None):
    """KSampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise): the final
    latent (latent_format.process_out is left to the decoder: latents / scaling factor). `latent_image`: a
    VAEEncode's output (img2img), else EmptyLatentImage's zeros; `start_step`: KSamplerAdvanced's start_at_step."""
    ms = DiscreteModelSampling(discrete_sigmas())
    sigmas = ksampler_sigmas(ms, scheduler, steps, denoise, start_step)
    if latent_image is None:
        latent = torch.zeros([batch_size, 4, height // 8, width // 8])  # EmptyLatentImage
    else:
        latent = latent_image * SD15_SCALE_FACTOR  # model.process_latent_in
    # comfy/sample.py prepare_noise: the global-style seeded CPU generator, one draw for the batch
    generator = torch.manual_seed(seed)
    noise = torch.randn(latent.size(), dtype=latent.dtype, layout=latent.layout, generator=generator, device="cpu")
    # CFGGuider.sample -> KSAMPLER.sample: max_denoise when the schedule starts at the model's sigma_max
    max_denoise = math.isclose(float(ms.sigma_max), float(sigmas[0]), rel_tol=1e-05) or sigmas[0] > ms.sigma_max
    eps = EPS()
    s0 = sigmas[0].reshape(1)
    x = noise * torch.sqrt(1.0 + s0 ** 2.0) if max_denoise else noise * s0
    x = (x + latent)

    def model(x, sigma):  # calc_cond_batch + cfg_function: uncond + (cond - uncond) * cfg
        t = ms.timestep(sigma).float()
        x_in = eps.calculate_input(sigma, x)
        out_c = unet(x_in, t, encoder_hidden_states=cond).sample
        out_u = unet(x_in, t, encoder_hidden_states=uncond).sample
        c, u = eps.calculate_denoised(sigma, out_c, x), eps.calculate_denoised(sigma, out_u, x)
        return u + (c - u) * cfg

    # k-diffusion default_noise_sampler(x, seed): a generator on x's device, seed + 1 on the CPU
    noise_generator = torch.Generator(device="cpu").manual_seed(seed + 1)
    s_in = x.new_ones([x.shape[0]])
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in)
            d = (x - denoised) / sigmas[i]
            if sampler_name == "euler":
                x = x + d * (sigmas[i + 1] - sigmas[i])
                continue
            # euler_ancestral, eta 1: get_ancestral_step, then fresh noise while sigma_next > 0
            sigma_up = min(sigmas[i + 1], (sigmas[i + 1] ** 2 * (sigmas[i] ** 2 - sigmas[i + 1] ** 2)
                                           / sigmas[i] ** 2) ** 0.5)
            sigma_down = (sigmas[i + 1] ** 2 - sigma_up ** 2) ** 0.5
            x = x + d * (sigma_down - sigmas[i])
            if sigmas[i + 1] > 0:
                x = x + torch.randn(x.size(), dtype=x.dtype, generator=noise_generator) * sigma_up
    return eps.inverse_noise_scaling(sigmas[-1], x)


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                         noise_sampler=None):
    """comfy/k_diffusion/sampling.py sample_res_multistep: res_multistep at eta 0, without CFG++. Its noise is
    added with sigma_up 0 (eta 0), so no generator is drawn from here (ComfyUI draws and multiplies by 0)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])

    def sigma_fn(t):
        return t.neg().exp()

    def t_fn(sigma):
        return sigma.log().neg()

    def phi1_fn(t):
        return torch.expm1(t) / t

    def phi2_fn(t):
        return (phi1_fn(t) - 1.0) / t

    old_sigma_down, old_denoised = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = sigmas[i + 1], 0.0  # get_ancestral_step at eta 0
        if sigma_down == 0 or old_denoised is None:
            d = (x - denoised) / sigmas[i]
            x = x + d * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = t_fn(sigmas[i]), t_fn(old_sigma_down), t_fn(sigma_down), t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1_val, phi2_val = phi1_fn(-h), phi2_fn(-h)
            b1 = torch.nan_to_num(phi1_val - phi2_val / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2_val / c2, nan=0.0)
            x = sigma_fn(h) * x + h * (b1 * denoised + b2 * old_denoised)
        assert sigma_up == 0.0
        old_denoised, old_sigma_down = denoised, sigma_down
    return x
