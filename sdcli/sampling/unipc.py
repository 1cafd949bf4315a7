"""UniPC (Zhao et al. 2023) as the WebUI runs it (modules/models/diffusion/uni_pc, sd_samplers_timesteps_impl.py).

A timestep sampler: the model is the guided eps at a (continuous) DDPM timestep. The
solver works in the VP parameterisation of the model's own alphas_cumprod: continuous
time t in [1/N, 1] for the N training steps, log alpha(t) interpolated linearly between
them, lambda(t) = log alpha - log sigma. With the WebUI's defaults: data (x0) prediction,
the multistep predictor-corrector of variant bh1 (B(h) = h), order 3, time-uniform steps
from t = 1 down to 1/N, lower orders for the last steps and no corrector on the last one.
Written from the paper's update rule. Imported lazily (torch).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sdcli.sampling.kdiffusion import Callback, Model, Noise

ORDER = 3  # the WebUI's defaults: uni_pc_order, uni_pc_variant bh1, skip type time_uniform, lower_order_final
LOWER_ORDER_FINAL = True


class _VPSchedule:
    """alpha(t), sigma(t), lambda(t) of the discrete model, piecewise linear in log alpha over t = (i+1)/N."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        self.n = len(alphas_cumprod)
        self.log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.ts = torch.linspace(0.0, 1.0, self.n + 1)[1:]

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        i = (torch.searchsorted(self.ts.to(t.device), t.reshape(-1)) - 1).clamp(0, self.n - 2)
        t0, t1 = self.ts.to(t.device)[i], self.ts.to(t.device)[i + 1]
        y0, y1 = self.log_alphas.to(t.device)[i], self.log_alphas.to(t.device)[i + 1]
        return y0 + (t.reshape(-1) - t0) * (y1 - y0) / (t1 - t0)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))


def _column(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def sample_unipc(model: Model, x: torch.Tensor, timesteps: torch.Tensor, noise: Noise, callback: Callback,
                 img2img: bool = False) -> torch.Tensor:
    """len(timesteps) UniPC steps from t = 1 (img2img: just above the walk's last timestep) to t = 1/N."""
    if len(timesteps) == 0:
        return x
    vp = _VPSchedule(model.alphas_cumprod)  # type: ignore[attr-defined]
    steps, order = len(timesteps), min(ORDER, len(timesteps))  # the WebUI refuses steps < order
    t_start = float(timesteps[-1]) / 1000 + 1 / 1000 if img2img else 1.0
    times = torch.linspace(t_start, 1.0 / vp.n, steps + 1).to(x.device)
    done = [0]

    def x0_at(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model(x, (t - 1.0 / vp.n) * 1000.0)
        return (x - _column(vp.sigma(t)) * eps) / _column(vp.alpha(t))

    def update(x: torch.Tensor, t: torch.Tensor, step_order: int, corrector: bool) -> tuple[torch.Tensor, Any]:
        x, model_x = _bh1_step(x0_at, vp, x, models, times_prev, t, step_order, corrector)
        callback(done[0], model_x if model_x is not None else x)
        done[0] += 1
        return x, model_x

    t0 = times[0].expand(x.shape[0])
    models, times_prev = [x0_at(x, t0)], [t0]
    for k in range(1, order):  # warm-up: orders 1 .. order-1
        t = times[k].expand(x.shape[0])
        x, model_x = update(x, t, k, True)
        models.append(model_x if model_x is not None else x0_at(x, t))
        times_prev.append(t)
    for step in range(order, steps + 1):
        t = times[step].expand(x.shape[0])
        step_order = min(order, steps + 1 - step) if LOWER_ORDER_FINAL else order
        x, model_x = update(x, t, step_order, step < steps)
        models, times_prev = models[1:] + models[-1:], times_prev[1:] + [t]
        if step < steps:
            models[-1] = model_x if model_x is not None else x0_at(x, t)
    return x


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.linalg.solve without its error check, which reads the LU's status back every step (a device sync);
    the update's matrices (powers of distinct ratios) are never singular."""
    return torch.linalg.solve_ex(a, b)[0]


def _bh1_step(x0_at, vp: _VPSchedule, x: torch.Tensor, models: list[torch.Tensor], times_prev: list[torch.Tensor],
              t: torch.Tensor, order: int, corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One multistep predictor(-corrector) step of variant bh1 (B(h) = h), data prediction."""
    lam_prev, lam_t = vp.lam(times_prev[-1]), vp.lam(t)
    m0 = models[-1]
    sigma_prev, sigma_t, alpha_t = vp.sigma(times_prev[-1]), vp.sigma(t), vp.alpha(t)
    h = lam_t - lam_prev
    rks, diffs = [], []
    for i in range(1, order):
        rk = ((vp.lam(times_prev[-(i + 1)]) - lam_prev) / h)[0]
        rks.append(rk)
        diffs.append((models[-(i + 1)] - m0) / rk)
    rks.append(torch.ones_like(h[0]))  # on the device of the others (a CPU 1.0 would not stack with them)
    r = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in rks]).to(x.device)
    hh = -h[0]
    h_phi_1 = torch.expm1(hh)
    h_phi_k, b_h = h_phi_1 / hh - 1, hh
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(r, i - 1))
        b.append(h_phi_k * math.factorial(i) / b_h)
        h_phi_k = h_phi_k / hh - 1 / math.factorial(i + 1)
    big_r, b_vec = torch.stack(rows), torch.stack(b).to(x.device)
    x_base = _column(sigma_t / sigma_prev) * x - _column(alpha_t * h_phi_1) * m0
    predicted = 0
    if diffs:
        rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else _solve(big_r[:-1, :-1], b_vec[:-1])
        predicted = sum(rho * d for rho, d in zip(rhos_p, diffs, strict=True))
    x_t = x_base - _column(alpha_t * b_h) * predicted
    if not corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else _solve(big_r, b_vec)
    model_t = x0_at(x_t, t)
    corrected = sum((rho * d for rho, d in zip(rhos_c[:-1], diffs, strict=True)), torch.zeros_like(x))
    return x_base - _column(alpha_t * b_h) * (corrected + rhos_c[-1] * (model_t - m0)), model_t
