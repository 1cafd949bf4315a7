"""ComfyUI's noise parameterisations (comfy/model_sampling.py), transcribed for the parity tests.

Written from ComfyUI's formulas, not from sdcli: EPS and V_PREDICTION with sigma_data 1 on
ModelSamplingDiscrete's table (linear-in-sqrt betas), CONST (rectified flow) on
ModelSamplingDiscreteFlow's shifted table and on ModelSamplingFlux's. Imports no sdcli code.
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
