"""DPM fast and DPM adaptive: k-diffusion's DPM-Solver samplers (Lu et al. 2022), as the WebUI runs them.

They integrate in t = -log(sigma) between a sigma range instead of walking a sigma
schedule: DPM fast splits `n` model calls into steps of order 3 (then 2 and 1),
DPM adaptive picks its own steps (order 3 with an embedded order-2 estimate and a
PID step-size controller). Both end at the smallest sigma, not at 0, as there.
Written from the paper's update rules; same signature as sampling.kdiffusion plus
`sigma_min`, `sigma_max` (the loop passes the range the WebUI passes).
Imported lazily (torch).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sdcli.sampling.kdiffusion import Callback, Model, Noise, ancestral_step


class _Solver:
    """eps(x, t) with a per-step cache, and the first- to third-order DPM-Solver steps."""

    def __init__(self, model: Model, callback: Callback):
        self.model, self.callback, self.calls = model, callback, 0

    @staticmethod
    def t(sigma: torch.Tensor) -> torch.Tensor:
        return -sigma.log()

    @staticmethod
    def sigma(t: torch.Tensor) -> torch.Tensor:
        return t.neg().exp()

    def eps(self, cache: dict[str, torch.Tensor], key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            denoised = self.model(x, self.sigma(t))
            self.callback(self.calls, denoised)
            self.calls += 1
            cache[key] = (x - denoised) / self.sigma(t)
        return cache[key]

    def step_1(self, x: torch.Tensor, t: Any, t_next: Any, cache: dict) -> torch.Tensor:
        h = t_next - t
        return x - self.sigma(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x: torch.Tensor, t: Any, t_next: Any, cache: dict, r1: float = 1 / 2) -> torch.Tensor:
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x: torch.Tensor, t: Any, t_next: Any, cache: dict, r1: float = 1 / 3,
               r2: float = 2 / 3) -> torch.Tensor:
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def ancestral(self, s: Any, t: Any, t_end: Any, eta: float) -> tuple[Any, Any]:
        """Where to step deterministically (not past t_end) and the noise to add back."""
        if not eta:
            return t, 0.0
        down, _ = ancestral_step(self.sigma(s), self.sigma(t), eta)
        t_ = torch.minimum(t_end, self.t(down))
        return t_, (self.sigma(t) ** 2 - self.sigma(t_) ** 2) ** 0.5


def sample_dpm_fast(model: Model, x: torch.Tensor, sigma_min: float, sigma_max: float, n: int, noise: Noise,
                    callback: Callback, eta: float = 0.0, s_noise: float = 1.0) -> torch.Tensor:
    solver = _Solver(model, callback)
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    m = math.floor(n / 3) + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1)
    orders = [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]
    for i, order in enumerate(orders):
        cache: dict[str, torch.Tensor] = {}
        t, t_next = ts[i], ts[i + 1]
        t_next_, up = solver.ancestral(t, t_next, t_end, eta)
        solver.eps(cache, "eps", x, t)
        x = (solver.step_1, solver.step_2, solver.step_3)[order - 1](x, t, t_next_, cache)
        x = x + up * s_noise * noise(solver.sigma(t), solver.sigma(t_next))
    return x


class _PID:
    """Step-size control: grow or shrink h by the (limited) inverse error; accept when it is small."""

    def __init__(self, h: float, order: float, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                 accept_safety: float = 0.81):
        self.h = h
        self.b = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order)
        self.accept_safety = accept_safety
        self.errs: list[float] = []

    def propose(self, error: torch.Tensor) -> bool:
        inv = 1 / (float(error) + 1e-8)
        if not self.errs:
            self.errs = [inv, inv, inv]
        self.errs[0] = inv
        factor = self.errs[0] ** self.b[0] * self.errs[1] ** self.b[1] * self.errs[2] ** self.b[2]
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


def sample_dpm_adaptive(model: Model, x: torch.Tensor, sigma_min: float, sigma_max: float, noise: Noise,
                        callback: Callback, eta: float = 0.0, s_noise: float = 1.0, order: int = 3,
                        rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05) -> torch.Tensor:
    solver = _Solver(model, callback)
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    s, x_prev = t_start, x
    pid = _PID(abs(h_init), 1.5 if eta else order)
    while s < t_end - 1e-5:
        cache: dict[str, torch.Tensor] = {}
        t = torch.minimum(t_end, s + pid.h)
        t_, up = solver.ancestral(s, t, t_end, eta)
        solver.eps(cache, "eps", x, s)
        if order == 2:
            x_low, x_high = solver.step_1(x, s, t_, cache), solver.step_2(x, s, t_, cache)
        else:
            x_low, x_high = solver.step_2(x, s, t_, cache, r1=1 / 3), solver.step_3(x, s, t_, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose(error):
            x_prev = x_low
            x = x_high + up * s_noise * noise(solver.sigma(s), solver.sigma(t))
            s = t
    return x
