"""Forge's samplers as they run on Flux.1 (see forge_flux_ref.py), transcribed for the parity tests.

From lllyasviel/stable-diffusion-webui-forge (commit dfdcbab): modules/sd_samplers_kdiffusion.py (the list and its
options), k_diffusion/sampling.py (sample_euler_ancestral and sample_dpm_2_ancestral switch to their _RF forms
when the predictor is PredictionFlux; heunpp2, ipndm), modules/sd_samplers_lcm.py, modules_forge/alter_samplers.py
and backend/modules/k_diffusion_extra.py (DDPM). Samplers shared with the WebUI come from kdiffusion_ref.py.
Noise: k-diffusion's module-level torch.randn_like (the image RNG through TorchHijack), as in Forge.
"""

from __future__ import annotations

import torch

from tests.reference import kdiffusion_ref as K

# ---------------------------------------------------------------- k_diffusion/sampling.py: Forge's own samplers


def sample_euler_ancestral_RF(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1.,
                              noise_sampler=None):
    """What sample_euler_ancestral runs when the predictor is PredictionFlux (Flux only, not SD3)."""
    noise_sampler = K.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            sigma_down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
            alpha_ip1, alpha_down = 1 - sigmas[i + 1], 1 - sigma_down
            renoise = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
            ratio = sigma_down / sigmas[i]
            x = ratio * x + (1 - ratio) * denoised
            if eta > 0:
                x = (alpha_ip1 / alpha_down) * x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


def sample_dpm_2_ancestral_RF(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1.,
                              noise_sampler=None):
    """What sample_dpm_2_ancestral runs when the predictor is PredictionFlux."""
    noise_sampler = K.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
        alpha_ip1, alpha_down = 1 - sigmas[i + 1], 1 - sigma_down
        renoise = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
        d = K.to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = K.to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = (alpha_ip1 / alpha_down) * x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0., s_tmin=0.,
                   s_tmax=float("inf"), s_noise=1.):
    s_in, s_end = x.new_ones([x.shape[0]]), sigmas[-1]
    for i in range(len(sigmas) - 1):
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.
        eps = K.torch.randn_like(x) * s_noise
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        d = K.to_d(x, sigma_hat, model(x, sigma_hat * s_in, **extra_args))
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = K.to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = K.to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = K.to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in, **extra_args))
            w = 3 * sigmas[0]
            w2, w3 = sigmas[i + 1] / w, sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """sample_ipndm: Adams-Bashforth on d = (x - denoised) / sigma, history of max_order - 1."""
    s_in, buffer = x.new_ones([x.shape[0]]), []
    for i in range(len(sigmas) - 1):
        d_cur = (x - model(x, sigmas[i] * s_in, **extra_args)) / sigmas[i]
        order, dt = min(max_order, i + 1), sigmas[i + 1] - sigmas[i]
        if order == 1:
            x = x + dt * d_cur
        elif order == 2:
            x = x + dt * (3 * d_cur - buffer[-1]) / 2
        elif order == 3:
            x = x + dt * (23 * d_cur - 16 * buffer[-1] + 5 * buffer[-2]) / 12
        else:
            x = x + dt * (55 * d_cur - 59 * buffer[-1] + 37 * buffer[-2] - 9 * buffer[-3]) / 24
        buffer = (buffer + [d_cur])[-(max_order - 1):]
    return x


def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """backend/modules/k_diffusion_extra.py (VP maths on flow sigmas: runs, unsound; noise from the global RNG)."""
    noise_sampler = (lambda s, t: torch.randn_like(x)) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma, sigma_prev, eps = sigmas[i], sigmas[i + 1], (x - denoised) / sigmas[i]
        xs = x / torch.sqrt(1.0 + sigma ** 2.0)
        ac, ac_prev = 1 / (sigma * sigma + 1), 1 / (sigma_prev * sigma_prev + 1)
        alpha = ac / ac_prev
        x = (1.0 / alpha).sqrt() * (xs - (1 - alpha) * eps / (1 - ac).sqrt())
        if sigma_prev > 0:
            x += ((1 - alpha) * (1. - ac_prev) / (1. - ac)).sqrt() * noise_sampler(sigma, sigma_prev)
            x *= torch.sqrt(1.0 + sigma_prev ** 2.0)
    return x


# Forge's sampler list: label -> (function, options) (sd_samplers_kdiffusion.samplers_k_diffusion, LCM, DDPM).
SAMPLERS = {
    "DPM++ 2M": (K.sample_dpmpp_2m, {"scheduler": "karras"}),
    "DPM++ SDE": (K.sample_dpmpp_sde, {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    "DPM++ 2M SDE": (K.sample_dpmpp_2m_sde, {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": (K.sample_dpmpp_2m_sde, {"scheduler": "exponential", "brownian_noise": True,
                                                  "solver_type": "heun"}),
    "DPM++ 2S a": (K.sample_dpmpp_2s_ancestral, {"scheduler": "karras", "second_order": True}),
    "DPM++ 3M SDE": (K.sample_dpmpp_3m_sde, {"scheduler": "exponential", "discard_next_to_last_sigma": True,
                                             "brownian_noise": True}),
    "Euler a": (sample_euler_ancestral_RF, {}),  # k_diffusion: PredictionFlux -> the _RF form
    "Euler": (K.sample_euler, {}),
    "LMS": (K.sample_lms, {}),
    "Heun": (K.sample_heun, {"second_order": True}),
    "DPM2": (K.sample_dpm_2, {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    "DPM2 a": (sample_dpm_2_ancestral_RF, {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                           "second_order": True}),
    "DPM fast": (K.sample_dpm_fast, {}),
    "DPM adaptive": (K.sample_dpm_adaptive, {}),
    "Restart": (K.restart_sampler, {"scheduler": "karras", "second_order": True}),
    "HeunPP2": (sample_heunpp2, {}),
    "IPNDM": (sample_ipndm, {}),
    "LCM": (K.sample_lcm, {}),  # schedule from LCMCompVisDenoiser over the Flux table; denoiser = the Flux one
    "DDPM": (sample_ddpm, {}),
}
# Forge lists these for every model but they cannot work on Flux; the reference refuses them.
NOT_TRANSCRIBED = {
    "DDIM": "timestep sampler: reads the first 1000 of the 10000 flow sigmas as a VP table (sigma <= 0.26)",
    "DDIM CFG++": "timestep sampler, as DDIM", "PLMS": "timestep sampler, as DDIM", "UniPC": "timestep sampler",
    "IPNDM_V": "not transcribed (variable-step IPNDM)", "DEIS": "not transcribed (needs k_diffusion/deis.py tables)",
}
