"""sdcli's denoising loop: one for txt2img, img2img and inpainting, as the WebUI's KDiffusionSampler.

Sigmas come from the schedule (sampling.schedules) over the model's sigma table, the
start latent is the image RNG's first draw noised to the first sigma (txt2img) or the
input latent noised to the start sigma (img2img: the last int(strength x steps)+1
sigmas, as the WebUI counts), both by the model's parameterisation (eps/v: latent +
noise x sigma), and the sampler row's k-diffusion function runs the CFG denoiser.
Imported lazily (torch).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sdcli.sampling import dpm_solver, flow_samplers, kdiffusion, preview, timesteps, unipc
from sdcli.sampling.denoiser import CFGDenoiser
from sdcli.sampling.rng import ImageNoise, brownian_noise
from sdcli.sampling.samplers import SamplerChoice, img2img_steps
from sdcli.sampling.schedules import get_sigmas

ETA_DEFAULTS = {False: 1.0, True: 0.0}  # the WebUI's "Eta for ancestral samplers" / "Eta (DDIM)"


def sampling_function(choice: SamplerChoice, flow: bool = False) -> Callable[..., torch.Tensor]:
    """The row's sampling function, by name: k-diffusion's, the DPM-Solver ones, or a timestep sampler's;
    `flow` (a rectified-flow parameterisation): the row's flow form where it has one."""
    name = (flow and choice.sampler.flow_function) or choice.sampler.function
    if name is None:
        raise ValueError(f"{choice.sampler.name} runs in the diffusers pipeline, not sdcli's loop")
    module = next(m for m in (kdiffusion, flow_samplers, dpm_solver, timesteps, unipc) if hasattr(m, name))
    return getattr(module, name)


@dataclass(frozen=True)
class SamplingOptions:
    """The WebUI settings that change a k-diffusion sampler's pixels (0 / None = the WebUI default)."""

    eta: float | None = None
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0  # 0 = infinity
    s_noise: float = 1.0
    sigma_min: float = 0.0  # 0 = the model's
    sigma_max: float = 0.0
    rho: float = 0.0  # 0 = the schedule's default (Karras 7, Polyexponential 1)


SETTINGS = ("eta", "s_churn", "s_tmin", "s_tmax", "s_noise")


def sampler_takes(choice: SamplerChoice) -> tuple[str, ...]:
    """Which WebUI settings (SETTINGS) the sampler's function takes; none on the diffusers path."""
    if choice.sampler.function is None:
        return ()
    params = inspect.signature(sampling_function(choice)).parameters
    return tuple(name for name in SETTINGS if name in params)


def function_arguments(choice: SamplerChoice, options: SamplingOptions) -> dict[str, Any]:
    """Keyword arguments for the sampler's function: its row's options and the WebUI settings it takes."""
    takes = sampler_takes(choice)
    wanted = {
        "eta": ETA_DEFAULTS[choice.sampler.timesteps] if options.eta is None else options.eta,
        "s_churn": options.s_churn,
        "s_tmin": options.s_tmin,
        "s_tmax": options.s_tmax or math.inf,
        "s_noise": options.s_noise,
    }
    return {**choice.sampler.options, **{k: v for k, v in wanted.items() if k in takes}}


def sample(choice: SamplerChoice, denoiser: CFGDenoiser, noise: ImageNoise, steps: int,
           *, options: SamplingOptions = SamplingOptions(), init_latent: torch.Tensor | None = None,
           strength: float = 1.0, t_enc: int | None = None,
           on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Denoise one batch; return its latents.

    The model is `denoiser.param` (its parameterisation and sigma table) and its network.
    `noise` yields the start noise first, then the sampler's noise. With `init_latent`
    the run starts from it at the sigma `strength` selects (img2img/inpaint), or, with
    `t_enc`, t_enc + 1 steps before the end (the WebUI's img2img given a step count: hires fix).
    """
    sampler = choice.sampler
    if init_latent is not None and t_enc is None:
        t_enc = img2img_steps(steps, strength) - 1
    if sampler.timesteps:
        return _sample_timesteps(choice, denoiser, noise, steps, init_latent, t_enc, on_step, options)
    if sampler.lcm and not denoiser.param.flow:  # the schedule and the denoiser both see LCM's 50 noise levels
        denoiser.param = denoiser.param.lcm()
    param = denoiser.param
    model_sigmas = param.table
    # 1. The schedule, and the part of it this run walks.
    sigmas = get_sigmas(choice.schedule, steps, model_sigmas, discard_penultimate=sampler.discard_penultimate,
                        sigma_min=options.sigma_min or None, sigma_max=options.sigma_max or None,
                        rho=options.rho or None, ays=param.ays, tokens=param.schedule_tokens or _tokens(noise.shape),
                        mu=param.schedule_mu)
    start_noise = noise.first()
    sigmas = sigmas.to(start_noise.device)
    if init_latent is None:
        walk = sigmas
        x = reference = param.noise_scaling(sigmas[0], start_noise)
    else:
        assert t_enc is not None  # set above whenever init_latent is
        walk = sigmas[steps - t_enc - 1:]
        x = param.noise_scaling(walk[0], start_noise, init_latent)
        reference = init_latent
    # 2. The sampler's noise: a Brownian tree (SDE samplers) or the image RNG.
    noise_sampler = brownian_noise(reference, sigmas, noise.seeds) if sampler.brownian else noise.sampler()
    total = len(walk) - 1
    # 3. The sampling function: on the sigmas, or (DPM fast/adaptive) between two sigmas, as the WebUI
    # passes them: the model's range and the steps asked for in txt2img, the walk's ends (before 0) and
    # length in img2img.
    function = sampling_function(choice, param.flow)
    params = inspect.signature(function).parameters
    where: dict[str, Any] = {"sigmas": walk}
    if "sigma_min" in params:
        low, high, n = (model_sigmas.sigma_min, model_sigmas.sigma_max, steps) if init_latent is None else (
            float(walk[-2]), float(walk[0]), total)
        where = {"sigma_min": low, "sigma_max": high, **({"n": n} if "n" in params else {})}
    report = _Steps(on_step, total)
    try:
        with torch.no_grad():
            latents = function(denoiser, x, noise=noise_sampler, callback=report, **where,
                               **function_arguments(choice, options))
    except preview.StopSampling:
        return report.last
    return param.inverse_noise_scaling(walk[-1], latents)


def _tokens(shape: tuple[int, ...]) -> int:
    """An image's latent tokens (cells of its [C, H, W] latent), which sized schedules (Flux2) scale with."""
    return int(shape[-2]) * int(shape[-1])


class _Steps:
    """The sampler's step callback: reports each step, keeps its denoised latent (a reference: no copy, no sync)
    for a live preview (sampling.preview) and for a run a step callback stops (preview.StopSampling)."""

    def __init__(self, on_step: Callable[[int, int], None] | None, total: int):
        self.on_step, self.total = on_step, total
        self.last: Any = None  # set before on_step runs, so before StopSampling can be raised

    def __call__(self, i: int, denoised: Any) -> None:
        self.last = denoised
        if self.on_step:
            preview.record(denoised)
            self.on_step(i + 1, self.total)


def _sample_timesteps(choice: SamplerChoice, denoiser: CFGDenoiser, noise: ImageNoise, steps: int,
                      init_latent: torch.Tensor | None, t_enc: int | None,
                      on_step: Callable[[int, int], None] | None, options: SamplingOptions) -> torch.Tensor:
    """DDIM/PLMS as the WebUI runs them: integer timesteps, eps guidance, no start scaling."""
    ts = timesteps.timesteps_for(steps, choice.sampler.discard_penultimate)
    x = noise.first()
    if init_latent is not None:  # noised to the first timestep of the walk
        x, ts = denoiser.param.noised_at_timestep(init_latent, x, ts[t_enc]), ts[:t_enc]
    denoiser.timesteps = True
    function = sampling_function(choice)
    # DDIM/PLMS stop one step short at t = 1; UniPC walks every timestep (from t = 1, or in img2img from
    # just above the walk's last timestep, as the WebUI).
    walks_all = "img2img" in inspect.signature(function).parameters
    extra = {"img2img": init_latent is not None} if walks_all else {}
    report = _Steps(on_step, len(ts) - (0 if walks_all else 1))
    try:
        with torch.no_grad():
            return function(denoiser, x, ts, noise.sampler(), report, **extra, **function_arguments(choice, options))
    except preview.StopSampling:
        return report.last
