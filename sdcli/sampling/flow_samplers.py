"""The rectified-flow forms of k-diffusion samplers that flow models run (Forge's and ComfyUI's _RF forms, and
ComfyUI's LCM with CONST noise scaling): Sampler.flow_function names them. Same signature as
sampling.kdiffusion's. Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.sampling.kdiffusion import Callback, Model, Noise, _dpm_2_to, levels


def _rf_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[Any, Any, Any]:
    """A rectified-flow ancestral step: (sigma_down, renoise scale, alpha ratio) (Forge/ComfyUI's _RF forms)."""
    down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - down
    renoise = (sigma_next ** 2 - down ** 2 * alpha_next ** 2 / alpha_down ** 2) ** 0.5
    return down, renoise, alpha_next / alpha_down


def sample_euler_ancestral_RF(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,  # noqa: N802
                              callback: Callback, eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Euler a on a flow model: step to sigma_down, rescale the signal to sigma_next's and add the noise."""
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        if host[i + 1] == 0:
            x = denoised
            continue
        down, renoise, ratio_alpha = _rf_step(sigmas[i], sigmas[i + 1], eta)
        ratio = down / sigmas[i]
        x = ratio * x + (1 - ratio) * denoised
        if eta > 0:
            x = ratio_alpha * x + noise(host[i], host[i + 1]) * s_noise * renoise
    return x


def sample_dpm_2_ancestral_RF(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,  # noqa: N802
                              callback: Callback, eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM2 a on a flow model: the log-sigma midpoint step to sigma_down, then the _RF renoising."""
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        down, renoise, ratio_alpha = _rf_step(sigmas[i], sigmas[i + 1], eta)
        x = _dpm_2_to(model, x, sigmas[i], denoised, down)
        if down != 0:
            x = ratio_alpha * x + noise(host[i], host[i + 1]) * s_noise * renoise
    return x


def sample_lcm_RF(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,
                  callback: Callback) -> torch.Tensor:
    """LCM on a rectified-flow model, as ComfyUI's sample_lcm with its CONST noise scaling: jump to the
    denoised latent, then noise it to the next sigma the flow way, (1 - s) x0 + s noise."""
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        x = denoised
        if host[i + 1] > 0:
            x = sigmas[i + 1] * noise(host[i], host[i + 1]) + (1.0 - sigmas[i + 1]) * x
    return x
