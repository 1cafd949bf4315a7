"""The WebUI's timestep samplers (sd_samplers_timesteps_impl.py): DDIM, DDIM CFG++ and PLMS on integer timesteps.

They walk t = 1, 1 + 1000//steps, ... backwards with a denoiser that returns the
guided noise prediction eps (CFG on eps), and, as in the WebUI, stop at the first
timestep (t = 1) after steps - 1 model steps. Same signature as sampling.kdiffusion,
with `timesteps` in place of sigmas; `model.alphas_cumprod` gives the schedule.
Written from the DDIM (Song et al. 2020) and PLMS (Liu et al. 2022) update rules.
Imported lazily (torch).
"""

from __future__ import annotations

import torch

from sdcli.sampling.kdiffusion import Callback, Model, Noise


def timesteps_for(steps: int, discard_penultimate: bool = False) -> torch.Tensor:
    """The WebUI's timesteps: every 1000//steps from 1, clipped to 999."""
    steps += 1 if discard_penultimate else 0
    return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def _alphas(model: Model, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alphas_cumprod at each timestep and at the one before it (float64 for the previous)."""
    acp = model.alphas_cumprod  # type: ignore[attr-defined]
    previous = torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))
    return acp[timesteps], acp[previous].to(torch.float64)


def sample_ddim(model: Model, x: torch.Tensor, timesteps: torch.Tensor, noise: Noise, callback: Callback,
                eta: float = 0.0) -> torch.Tensor:
    return _ddim(model, x, timesteps, noise, callback, eta, cfgpp=False)


def sample_ddim_cfgpp(model: Model, x: torch.Tensor, timesteps: torch.Tensor, noise: Noise, callback: Callback,
                      eta: float = 0.0) -> torch.Tensor:
    """DDIM with CFG++ (Chung et al. 2024), as the WebUI's "DDIM CFG++": the CFG scale is divided by
    12.5 (scale 12.5 = guidance 1) and the step re-noises along the unconditional eps, not the guided one."""
    model.scale_multiplier, model.keep_uncond = 1 / 12.5, True  # type: ignore[attr-defined]
    return _ddim(model, x, timesteps, noise, callback, eta, cfgpp=True)


def _ddim(model: Model, x: torch.Tensor, timesteps: torch.Tensor, noise: Noise, callback: Callback,
          eta: float, cfgpp: bool) -> torch.Tensor:
    alphas, alphas_prev = _alphas(model, timesteps)
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas.double()) * (1 - alphas.double() / alphas_prev)).sqrt()
    host_alphas, host_prev, host_sigmas = alphas.tolist(), alphas_prev.tolist(), sigmas.tolist()  # read once
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].float())
        direction = model.last_uncond if cfgpp else e_t  # type: ignore[attr-defined]
        a_t, a_prev, sigma_t = host_alphas[index], host_prev[index], host_sigmas[index]
        pred_x0 = (x - (1 - a_t) ** 0.5 * e_t) / a_t ** 0.5
        callback(i, pred_x0)
        x = a_prev ** 0.5 * pred_x0 + (1.0 - a_prev - sigma_t ** 2) ** 0.5 * direction + sigma_t * noise(None, None)
    return x


def sample_plms(model: Model, x: torch.Tensor, timesteps: torch.Tensor, noise: Noise,
                callback: Callback) -> torch.Tensor:
    alphas, alphas_prev = _alphas(model, timesteps)
    host_alphas, host_prev = alphas.tolist(), alphas_prev.tolist()  # read once, not every step
    old: list[torch.Tensor] = []

    def step(e_t: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a_t, a_prev = host_alphas[index], host_prev[index]
        pred_x0 = (x - (1 - a_t) ** 0.5 * e_t) / a_t ** 0.5
        return a_prev ** 0.5 * pred_x0 + (1.0 - a_prev) ** 0.5 * e_t, pred_x0

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].float())
        if not old:  # pseudo improved Euler to start
            x_next, _ = step(e_t, index)
            e_prime = (e_t + model(x_next, timesteps[max(index - 1, 0)].float())) / 2
        elif len(old) == 1:  # Adams-Bashforth, orders 2 to 4
            e_prime = (3 * e_t - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e_t - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x, pred_x0 = step(e_prime, index)
        callback(i, pred_x0)
        old = [*old, e_t][-3:]
    return x
