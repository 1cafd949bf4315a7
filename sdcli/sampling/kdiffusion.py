"""The k-diffusion sampling functions the WebUI uses, as small pure functions.

Written from the published maths (Karras et al. 2022; DPM-Solver++, Lu et al. 2022)
because the `k-diffusion` package cannot be imported here (its __init__ pulls in
torchvision, wandb and kornia). One signature for all:

    sample_x(model, x, sigmas, noise, callback, **options) -> x

`model(x, sigma)` returns the denoised latent (the CFG denoiser); `noise(sigma,
sigma_next)` returns unit Gaussian noise (the image RNG, or a Brownian tree for the
SDE samplers); `callback(i, denoised)` reports each step. Options are the WebUI's:
eta, s_noise, s_churn, s_tmin, s_tmax, solver_type; each function takes only its own.
Imported lazily (torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (sigma, next sigma) -> noise, as tensors or host floats (the sigma levels); the timestep samplers pass None, None
Noise = Callable[[torch.Tensor | float | None, torch.Tensor | float | None], torch.Tensor]
Callback = Callable[[int, torch.Tensor], None]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The Karras ODE derivative dx/dsigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0) -> tuple[Any, Any]:
    """(sigma_down, sigma_up): where to step deterministically and how much noise to add back."""
    if not eta:
        return sigma_next, 0.0
    up = torch.minimum(sigma_next, eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    return (sigma_next ** 2 - up ** 2) ** 0.5, up


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def levels(sigmas: torch.Tensor) -> list[float]:
    """The sigmas' values on the host, read once per run: a branch on a device tensor (`if sigmas[i + 1] > 0`)
    waits for the device's queue to drain, every step. The maths keeps using the tensors (same pixels)."""
    return sigmas.tolist()


def _churn(x: torch.Tensor, sigma: torch.Tensor, steps: int, noise: Noise, s_churn: float, s_tmin: float,
           s_tmax: float, s_noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Karras' stochastic churn: raise sigma by gamma and add matching noise (a no-op at s_churn 0)."""
    # The common case (no churn) decides without reading sigma back from the GPU (a stall per step).
    gamma = 0.0 if s_churn == 0 else min(s_churn / steps, 2 ** 0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    eps = noise(sigma, sigma) * s_noise  # drawn every step, as k-diffusion does
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat ** 2 - sigma ** 2) ** 0.5
    return x, sigma_hat


def sample_euler(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas[i], len(sigmas) - 1, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat)
        callback(i, denoised)
        x = x + to_d(x, sigma_hat, denoised) * (sigmas[i + 1] - sigma_hat)
    return x


def sample_euler_ancestral(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                           eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        if host[i + 1] > 0:
            x = x + noise(host[i], host[i + 1]) * s_noise * up
    return x


def sample_heun(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                s_noise: float = 1.0) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas[i], len(sigmas) - 1, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat)
        callback(i, denoised)
        d = to_d(x, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if host[i + 1] == 0:
            x = x + d * dt
        else:  # trapezoid: average the slopes at both ends
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpm_2(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas[i], len(sigmas) - 1, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat)
        callback(i, denoised)
        d = to_d(x, sigma_hat, denoised)
        if host[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:  # midpoint in log sigma
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            x = x + to_d(x_2, sigma_mid, model(x_2, sigma_mid)) * (sigmas[i + 1] - sigma_hat)
    return x


def sample_dpm_2_ancestral(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                           eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = _dpm_2_to(model, x, sigmas[i], denoised, down)
        if down != 0:
            x = x + noise(host[i], host[i + 1]) * s_noise * up
    return x


def _dpm_2_to(model: Model, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor,
              down: torch.Tensor) -> torch.Tensor:
    """DPM2's step from sigma to `down`: Euler to 0, else through the log-sigma midpoint (a second model call)."""
    d = to_d(x, sigma, denoised)
    if down == 0:
        return x + d * (down - sigma)
    sigma_mid = sigma.log().lerp(down.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    return x + to_d(x_2, sigma_mid, model(x_2, sigma_mid)) * (down - sigma)


def _lms_coefficient(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t_i, t_i+1] of the Lagrange basis polynomial j (scipy quadrature, as k-diffusion)."""
    from scipy import integrate

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return product

    return float(integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0])


def sample_lms(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
               order: int = 4) -> torch.Tensor:
    points = sigmas.detach().cpu().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        ds = [*ds, to_d(x, sigmas[i], denoised)][-order:]
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, points, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(ds), strict=True))
    return x


def sample_dpmpp_2s_ancestral(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,
                              callback: Callback, eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:  # DPM-Solver++(2S) to sigma_down, midpoint r = 1/2
            t, t_next = _t(sigmas[i]), _t(down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if host[i + 1] > 0:
            x = x + noise(host[i], host[i + 1]) * s_noise * up
    return x


def sample_dpmpp_sde(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                     eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> torch.Tensor:
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        if host[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # 1. Ancestral step to the intermediate point s.
        down, up = ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(down)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise(_sigma(t), _sigma(s)) * s_noise * up
        denoised_2 = model(x_2, _sigma(s))
        # 2. Ancestral step to t_next with the blended denoised estimate.
        down, up = ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(down)
        blended = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * blended
        x = x + noise(_sigma(t), _sigma(t_next)) * s_noise * up
    return x


def sample_dpmpp_2m(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,
                    callback: Callback) -> torch.Tensor:
    old = None
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old is None or host[i + 1] == 0:
            estimate = denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * estimate
        old = denoised
    return x


def sample_res_multistep(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,
                         callback: Callback) -> torch.Tensor:
    """ComfyUI's res_multistep (its k_diffusion/sampling.py, eta 0; RES, arXiv 2308.02157): Euler on the first and
    last steps, between them a second-order exponential integrator in t = -log sigma on this and the last step's
    denoised latents, weighted by phi_1 and phi_2 of -h as ComfyUI computes them."""
    old = None
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        if old is None or host[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
        else:
            t, t_next, t_prev = _t(sigmas[i]), _t(sigmas[i + 1]), _t(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t) / h  # the last step's sigma_down is this step's sigma (no noise at eta 0)
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            x = _sigma(h) * x + h * (b1 * denoised + b2 * old)
        old = denoised
    return x


def sample_dpmpp_2m_sde(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                        eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint") -> torch.Tensor:
    old, h_last = None, None
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        if host[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old is not None and h_last is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old)
            if eta:
                x = x + noise(host[i], host[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
            h_last = h
        old = denoised
    return x


def sample_dpmpp_3m_sde(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                        eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    d_1: torch.Tensor | None = None  # the two previous denoised estimates
    d_2: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        h: torch.Tensor | None = None
        if host[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None and h_1 is not None and d_1 is not None and d_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None and d_1 is not None:
                x = x + phi_2 * ((denoised - d_1) / (h_1 / h))
            if eta:
                x = x + noise(host[i], host[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        d_1, d_2 = denoised, d_1
        h_1, h_2 = h, h_1
    return x


def sample_restart(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback,
                   s_noise: float = 1.0) -> torch.Tensor:
    """Restart sampling (Xu et al. 2023) as the WebUI's sd_samplers_extra: Heun steps; from 20
    steps on, a Karras schedule shortened to make room for restarts that re-noise from sigma ~0.1
    back up to ~2 and walk down again (9 steps once, or steps/4 twice from 36 steps)."""
    from sdcli.sampling.schedules import karras

    steps = len(sigmas) - 1
    restarts: dict[float, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras(steps - restart_steps * times, float(sigmas[-2]), float(sigmas[0]), None).to(sigmas.device)
        restarts = {0.1: (restart_steps + 1, times, 2.0)}
    at_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restarts.items()}
    # 1. The walk: the schedule, with the restart segments spliced in after their start index.
    walk: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        walk.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in at_index:
            n, times, top = at_index[i + 1]
            top_index = int(torch.argmin(abs(sigmas - top), dim=0))
            if top_index < i + 1:
                segment = karras(n, float(sigmas[i + 1]), float(sigmas[top_index]), None).to(sigmas.device)[:-1]
                walk += list(zip(segment[:-1], segment[1:], strict=True)) * times
    # 2. Heun steps; going back up adds the noise that takes sigma from the last value to the new one.
    last = None
    for step, (sigma, sigma_next) in enumerate(walk):
        if last is not None and last < sigma:
            x = x + noise(last, sigma) * s_noise * (sigma ** 2 - last ** 2) ** 0.5
        denoised = model(x, sigma)
        callback(step, denoised)
        d = to_d(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            x_2 = x + d * (sigma_next - sigma)
            x = x + (d + to_d(x_2, sigma_next, model(x_2, sigma_next))) / 2 * (sigma_next - sigma)
        last = sigma_next
    return x


def sample_lcm(model: Model, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise, callback: Callback) -> torch.Tensor:
    """Latent Consistency Model sampling (Luo et al. 2023), as the WebUI's "LCM": jump to the
    denoised latent, then re-noise it to the next sigma with fresh noise."""
    host = levels(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        callback(i, denoised)
        x = denoised
        if host[i + 1] > 0:
            x = x + sigmas[i + 1] * noise(host[i], host[i + 1])
    return x
