"""Sigma schedules as the WebUI computes them (modules/sd_schedulers.py, k-diffusion).

A `ModelSigmas` holds the model's 1000 training sigmas (from its alphas_cumprod)
and converts between sigma and the continuous timestep t by log-sigma
interpolation, as k-diffusion's DiscreteSchedule. Each schedule type is one
function `(n, sigma_min, sigma_max, model_sigmas) -> n+1 sigmas ending in 0`
and one row of SCHEDULE_FUNCTIONS. Hand-written: the k-diffusion package cannot be
imported here (its __init__ pulls in torchvision, wandb and kornia).
Imported lazily (torch).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

# The WebUI's Align Your Steps sigmas (NVIDIA's published 10-step schedules) and Beta defaults.
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
AYS = {"sd1": AYS_SD1, "sdxl": AYS_SDXL}  # by the family's `ays` name
BETA_ALPHA = 0.6
BETA_BETA = 0.6


class SigmaTable(Protocol):
    """A model's training noise levels (ascending) and sigma <-> timestep (schedules.ModelSigmas is one)."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> float: ...
    @property
    def sigma_max(self) -> float: ...
    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor: ...
    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor: ...
    def uniform(self, n: int) -> torch.Tensor: ...


def alphas_cumprod(config: Any) -> torch.Tensor:
    """The training alphas_cumprod from a diffusers scheduler config, in float64 as ldm builds it (ModelSigmas
    keeps it in float32, as the WebUI's model holds it)."""
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    kind = config.get("beta_schedule", "scaled_linear")
    if kind == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    elif kind == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    else:
        raise ValueError(f"beta schedule {kind!r} is not supported by sdcli's sampler loop")
    return torch.cumprod(1.0 - betas, dim=0)


class SigmaRange:
    """sigma_min and sigma_max of a table that holds its `sigmas` in ascending order."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])


class ModelSigmas(SigmaRange):
    """The model's discrete sigmas and the sigma <-> t conversion (log-sigma interpolation)."""

    def __init__(self, acp: torch.Tensor):
        self.exact_alphas_cumprod = acp  # as given (alphas_cumprod: float64), for comfy()
        self.alphas_cumprod = acp = acp.float()
        self.sigmas = ((1 - acp) / acp) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self._log_sigmas_on: dict[Any, torch.Tensor] = {}

    def comfy(self) -> ModelSigmas:
        """The table as ComfyUI's ModelSamplingDiscrete holds it: sigmas from the float64 alphas_cumprod, then
        float32 (the WebUI's come from float32 ones; sigma_min differs in the 5th digit)."""
        table = copy.copy(self)
        acp = self.exact_alphas_cumprod.double()
        table.sigmas = (((1 - acp) / acp) ** 0.5).float()
        table.log_sigmas, table._log_sigmas_on = table.sigmas.log(), {}
        return table

    def log_sigmas_on(self, device: Any) -> torch.Tensor:
        """`log_sigmas` on `device`, copied once: a copy per step would stall a GPU's queue every step."""
        if device not in self._log_sigmas_on:
            self._log_sigmas_on[device] = self.log_sigmas.to(device)
        return self._log_sigmas_on[device]

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep of a sigma (piecewise linear in log sigma)."""
        log_sigma = sigma.log()
        log_sigmas = self.log_sigmas_on(sigma.device)
        dists = log_sigma - log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
        high = low + 1
        w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high])).clamp(0, 1)
        return ((1 - w) * low + w * high).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Sigma at a continuous timestep."""
        t = t.float()
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigmas = self.log_sigmas_on(t.device)
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    def uniform(self, n: int) -> torch.Tensor:
        """n sigmas evenly spaced in t from the largest to the smallest (k-diffusion's get_sigmas(n))."""
        return self.t_to_sigma(torch.linspace(len(self.sigmas) - 1, 0, n))


class LCMSigmas(ModelSigmas):
    """The WebUI's LCM model wrap (sd_samplers_lcm.py): 50 of the 1000 training noise levels.

    Every 20th training timestep down from 999 (999, 979, ..., 19); a sigma maps to the
    integer timestep of the nearest of them (t = 20 i + 19), and t back to a sigma by
    interpolating between them. The denoiser reads the UNet output as eps and applies
    LCM's boundary scalings at that timestep (parameterisation.LCM).
    """

    SKIP = 20  # 1000 training timesteps // 50 LCM timesteps

    def __init__(self, acp: torch.Tensor):
        super().__init__(acp[torch.arange(len(acp) - 1, -1, -self.SKIP).flip(0)])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        nearest = (sigma.log() - self.log_sigmas_on(sigma.device)[:, None]).abs().argmin(dim=0)
        return nearest.view(sigma.shape) * self.SKIP + (self.SKIP - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        index = ((t - (self.SKIP - 1)) / self.SKIP).float().clamp(0, len(self.sigmas) - 1)
        return super().t_to_sigma(index)

    def uniform(self, n: int) -> torch.Tensor:
        start, end = self.sigma_to_t(torch.tensor(self.sigma_max)), self.sigma_to_t(torch.tensor(self.sigma_min))
        return self.t_to_sigma(torch.linspace(float(start), float(end), n))


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def uniform(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    return _append_zero(ms.uniform(n))


def karras(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable | None, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def _t_range(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable, trailing: bool) -> torch.Tensor:
    start, end = ms.sigma_to_t(torch.tensor(sigma_max)), ms.sigma_to_t(torch.tensor(sigma_min))
    return torch.linspace(float(start), float(end), n + 1)[:-1] if trailing else torch.linspace(float(start),
                                                                                                 float(end), n)


def _from_list(values: list[float]) -> torch.Tensor:
    return torch.tensor([*values, 0.0], dtype=torch.float32)


def sgm_uniform(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    return _from_list([float(ms.t_to_sigma(t)) for t in _t_range(n, sigma_min, sigma_max, ms, trailing=True)])


def normal(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    return _from_list([float(ms.t_to_sigma(t)) for t in _t_range(n, sigma_min, sigma_max, ms, trailing=False)])


def kl_optimal(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    a_min, a_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    k = torch.arange(n + 1)
    return torch.tan(k / n * a_min + (1.0 - k / n) * a_max)


def align_your_steps(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable,
                     table: tuple[float, ...] = AYS_SD1) -> torch.Tensor:
    if n == len(table):
        return _from_list(list(table))
    xs, ys = np.linspace(0, 1, len(table)), np.log(np.array(table)[::-1])
    resampled = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]
    return torch.tensor(np.append(resampled, [0.0]), dtype=torch.float32)


def simple(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    stride, table = len(ms.sigmas) / n, ms.sigmas.tolist()  # one read of the table, not one per step
    return _from_list([table[-(1 + int(i * stride))] for i in range(n)])


def ddim(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    stride = max(len(ms.sigmas) // n, 1)
    table = ms.sigmas.tolist()  # one read of the table, not one per step
    picked = [table[i] for i in range(1, len(table), stride)]
    return _from_list(picked[::-1])


def beta(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    from scipy import stats

    ts = [stats.beta.ppf(x, BETA_ALPHA, BETA_BETA) for x in 1 - np.linspace(0, 1, n)]
    return _from_list([sigma_min + x * (sigma_max - sigma_min) for x in ts])


def comfy_beta(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable) -> torch.Tensor:
    """ComfyUI's beta_scheduler (its BasicScheduler/KSampler "beta"; the WebUI's Beta interpolates instead): the
    table's sigmas at the rounded beta quantiles of n points from 1 (the last left out) of its last index, a
    timestep equal to the one before dropped (fewer steps, as ComfyUI runs them)."""
    from scipy import stats

    last = len(ms.sigmas) - 1
    table = ms.sigmas.tolist()
    picked: list[float] = []
    previous = -1.0
    for x in 1 - np.linspace(0, 1, n, endpoint=False):
        t = float(np.rint(stats.beta.ppf(x, BETA_ALPHA, BETA_BETA) * last))
        if t != previous:
            picked.append(table[int(t)])
        previous = t
    return _from_list(picked)


def empirical_mu(tokens: int, steps: int) -> float:
    """BFL's Flux.2 mu for an image of `tokens` latent tokens sampled in `steps` steps (flux2 src/flux2/sampling.py
    compute_empirical_mu, as diffusers' Flux2 pipelines and ComfyUI's Flux2Scheduler take it): linear in the token
    count, read at 10 and 200 steps and interpolated in the step count; above 4300 tokens the 200-step line."""
    slope_200, base_200 = 0.00016927, 0.45666666
    slope_10, base_10 = 8.73809524e-05, 1.89833333
    at_200 = slope_200 * tokens + base_200
    if tokens > 4300:
        return float(at_200)
    per_step = (at_200 - (slope_10 * tokens + base_10)) / 190.0  # the line through (10, m_10) and (200, m_200)
    at_0 = at_200 - 200.0 * per_step
    return float(per_step * steps + at_0)


def flux2(n: int, sigma_min: float, sigma_max: float, ms: SigmaTable, tokens: int = 4096,
          mu: float | None = None) -> torch.Tensor:
    """ComfyUI's Flux2Scheduler node: n + 1 times evenly spaced from 1 to 0, each e^mu / (e^mu + (1/t - 1)), mu =
    `mu` (--shift) or empirical_mu(tokens, n) for an image of `tokens` latent tokens; the model's table unused."""
    mu = empirical_mu(tokens, n) if mu is None else mu
    t = torch.linspace(1, 0, n + 1)
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


ScheduleFunction = Callable[..., torch.Tensor]
# Schedule key (sampling.samplers.SCHEDULE_LABELS) -> function; one row per WebUI schedule type.
SCHEDULE_FUNCTIONS: dict[str, ScheduleFunction] = {
    "uniform": uniform,
    "karras": karras,
    "exponential": exponential,
    "polyexponential": polyexponential,
    "sgm uniform": sgm_uniform,
    "kl optimal": kl_optimal,
    "align your steps": align_your_steps,
    "simple": simple,
    "normal": normal,
    "ddim": ddim,
    "beta": beta,
    "comfy beta": comfy_beta,
    "flux2": flux2,
}
# Schedules sized to the image (its latent tokens): a model family's own (sampling.samplers.MODEL_SCHEDULES).
SIZED_SCHEDULES = ("flux2",)


def get_sigmas(schedule: str, steps: int, ms: SigmaTable, *, discard_penultimate: bool = False,
               sigma_min: float | None = None, sigma_max: float | None = None, rho: float | None = None,
               ays: tuple[float, ...] | None = None, tokens: int | None = None,
               mu: float | None = None) -> torch.Tensor:
    """The sigmas for `steps` steps (steps+1 values ending in 0), as the WebUI's get_sigmas.

    `discard_penultimate` (DPM2, DPM2 a, DPM++ 3M SDE) asks for one step more and drops
    the next-to-last sigma. sigma_min/max override the model's range (WebUI options
    "sigma min/max"; Uniform ignores them, as there). `ays`: the model family's Align Your
    Steps sigmas (default SD 1.x's). `tokens` (the image's latent tokens) and `mu` (a shift asked for) size
    the schedules in SIZED_SCHEDULES.
    """
    steps += 1 if discard_penultimate else 0
    lo = sigma_min if sigma_min else ms.sigma_min
    hi = sigma_max if sigma_max else ms.sigma_max
    kwargs: dict[str, Any] = {}
    if rho and schedule in ("karras", "polyexponential"):
        kwargs["rho"] = rho
    if schedule == "align your steps" and ays:
        kwargs["table"] = ays
    if schedule in SIZED_SCHEDULES:
        kwargs.update({"mu": mu, **({} if tokens is None else {"tokens": tokens})})
    sigmas = SCHEDULE_FUNCTIONS[schedule](steps, lo, hi, ms, **kwargs).float()
    if discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas
