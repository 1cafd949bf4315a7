"""Noise parameterisations: how a denoising network's input and output relate to the noise level.

The loop and the CFG denoiser know a model only through one of these (and its network adapter):
its sigma table (the model's training noise levels and sigma <-> timestep), the scaling of the
network's input, how its output becomes a denoised latent, and how a start latent is noised.
As k-diffusion's external.py wrappers and ComfyUI's model_sampling classes describe them:

- Eps (SD 1.x/2.x/XL eps): the network predicts the noise; c_in = 1/sqrt(sigma^2+1),
  denoised = x - sigma * out; start = x0 + sigma * noise.
- V (v-prediction): c_out = -sigma/sqrt(sigma^2+1), c_skip = 1/(sigma^2+1); the rest as Eps.
- Flow (rectified flow, ComfyUI's CONST): the network predicts the velocity; c_in = 1,
  denoised = x - sigma * out; start = (1 - sigma) * x0 + sigma * noise; sigmas in (0, 1] from
  a shifted timestep table (FlowSigmas: sigma = shift t / (1 + (shift - 1) t); FluxSigmas).
- LCM: the WebUI's LCM wrap of an Eps/V model (sampler-side, sd_samplers_lcm.py).

Each formula is written as k-diffusion evaluates it (the WebUI's pixels depend on the order of
float operations). Imported lazily (torch).
"""

from __future__ import annotations

import math

import torch

from sdcli.sampling.schedules import LCMSigmas, ModelSigmas, SigmaRange, SigmaTable


class Parameterisation:
    """The interface the loop and the denoiser use (see the module doc); subclasses give the maths."""

    def __init__(self, table: SigmaTable, ays: tuple[float, ...] | None = None):
        self.table = table
        self.ays = ays  # the family's "Align Your Steps" sigmas (None: the schedule's default, SD 1.x's)
        self.schedule_mu: float | None = None  # the mu an image-sized schedule takes (--shift; None: its own)
        # The image tokens an image-sized schedule is sized for (None: the latent's cells); an edit's, where ComfyUI's
        # Flux2Scheduler is given a reference's exact pixels (families.edit_inputs.EditInputs.schedule_tokens).
        self.schedule_tokens: int | None = None

    flow = False  # rectified flow: the ancestral samplers take their _RF forms (Forge, ComfyUI)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.table.sigma_to_t(sigma)

    def scale_input(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The network's input at noise level `sigma` (shaped to broadcast over x)."""
        raise NotImplementedError

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output `out` for input x at `sigma` -> the denoised latent."""
        raise NotImplementedError

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor,
                      x0: torch.Tensor | None = None) -> torch.Tensor:
        """The start latent at `sigma`: `noise` alone (txt2img) or noising the latent `x0` (img2img)."""
        raise NotImplementedError

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The sampled latent at the last sigma -> the model's clean latent."""
        return latent

    def comfy(self) -> Parameterisation:
        """This model as ComfyUI's model sampling runs it (--rng comfy): the same, unless a subclass says."""
        return self

    def lcm(self) -> Parameterisation:
        """The WebUI's LCM wrap of this model (the LCM sampler); ValueError where it has none."""
        raise ValueError(f"the LCM sampler needs a discrete eps/v model, not {type(self).__name__}")

    # The timestep samplers (DDIM, PLMS, UniPC) work on the discrete DDPM schedule itself.
    @property
    def alphas_cumprod(self) -> torch.Tensor:
        raise ValueError(f"the timestep samplers need a discrete eps/v model, not {type(self).__name__}")

    def eps_at_timestep(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The noise prediction of the network output `out` for x at integer timesteps t."""
        raise ValueError(f"the timestep samplers need a discrete eps/v model, not {type(self).__name__}")

    def noised_at_timestep(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 noised to integer timestep t, as the timestep samplers start img2img."""
        raise ValueError(f"the timestep samplers need a discrete eps/v model, not {type(self).__name__}")


class Eps(Parameterisation):
    """Noise prediction on a discrete DDPM schedule (k-diffusion's CompVisDenoiser)."""

    table: ModelSigmas

    def __init__(self, table: ModelSigmas, ays: tuple[float, ...] | None = None):
        super().__init__(table, ays)

    def scale_input(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_in = 1 / (sigma ** 2 + 1) ** 0.5  # sigma_data = 1
        return x * c_in

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return x + out * -sigma

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor,
                      x0: torch.Tensor | None = None) -> torch.Tensor:
        return noise * sigma if x0 is None else x0 + noise * sigma

    def lcm(self) -> Parameterisation:
        return LCM(LCMSigmas(self.table.alphas_cumprod), self.ays)

    def comfy(self) -> Parameterisation:
        return ComfyEps(self.table.comfy(), self.ays)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.table.alphas_cumprod

    def eps_at_timestep(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out

    def noised_at_timestep(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t].to(noise.device)
        return x0 * a.sqrt() + noise * (1 - a).sqrt()


class V(Eps):
    """Velocity prediction on a discrete DDPM schedule (k-diffusion's CompVisVDenoiser)."""

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        # c_out and c_skip of the v parameterisation, evaluated as k-diffusion does
        return out * (-sigma / (sigma ** 2 + 1) ** 0.5) + x * (1 / (sigma ** 2 + 1))

    def eps_at_timestep(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(x.device)[t.to(torch.int)].reshape(-1, 1, 1, 1)
        return a.sqrt() * out + (1 - a).sqrt() * x

    def comfy(self) -> Parameterisation:
        return ComfyV(self.table.comfy(), self.ays)


class ComfyEps(Eps):
    """Eps as ComfyUI's ModelSamplingDiscrete runs it (comfy/model_sampling.py): the network is called at the
    NEAREST training timestep (the WebUI interpolates between two), and a run starting at the model's sigma_max
    starts from noise x sqrt(1 + sigma^2) (its max_denoise), not noise x sigma."""

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        nearest = (sigma.log() - self.table.log_sigmas_on(sigma.device)[:, None]).abs().argmin(dim=0)
        return nearest.view(sigma.shape).float()

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor,
                      x0: torch.Tensor | None = None) -> torch.Tensor:
        at_max = float(sigma.max()) >= self.table.sigma_max * (1 - 1e-5)
        scaled = noise * (1.0 + sigma ** 2).sqrt() if at_max else noise * sigma
        return scaled if x0 is None else x0 + scaled


class ComfyV(ComfyEps, V):
    """V as ComfyUI runs it (ComfyEps's timesteps and start, V's output)."""


class LCM(Eps):
    """The WebUI's LCM wrap: 50 of the training noise levels (schedules.LCMSigmas); the output read as
    eps whatever the model predicts, then LCM's boundary scalings at the integer timestep."""

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        t = self.sigma_to_t(sigma.flatten())
        scaled_t = t.reshape(-1, 1, 1, 1) * 10.0
        skip, scale = 0.25 / (scaled_t ** 2 + 0.25), scaled_t / (scaled_t ** 2 + 0.25) ** 0.5  # sigma_data 0.5
        return scale * (x + out * -sigma) + skip * x

    def lcm(self) -> Parameterisation:
        return self

    def comfy(self) -> Parameterisation:
        return self  # ComfyUI's LCM is its own sampler; sdcli's LCM wrap stays


class Flow(Parameterisation):
    """Rectified flow (ComfyUI's CONST): the network predicts the velocity noise - x0 at sigma in (0, 1]."""

    flow = True

    def scale_input(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return x - out * sigma

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor,
                      x0: torch.Tensor | None = None) -> torch.Tensor:
        return sigma * noise if x0 is None else sigma * noise + (1.0 - sigma) * x0

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent / (1.0 - sigma)


class _ContinuousTable(SigmaRange):
    """A sigma table from a continuous sigma(t): `steps` training levels, uniform steps evenly spaced in t."""

    def __init__(self, sigmas: torch.Tensor):
        self.sigmas = sigmas

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def uniform(self, n: int) -> torch.Tensor:
        start = self.sigma_to_t(torch.tensor(self.sigma_max))
        end = self.sigma_to_t(torch.tensor(self.sigma_min))
        return self.t_to_sigma(torch.linspace(float(start), float(end), n))


def time_shift(shift: float, t: torch.Tensor) -> torch.Tensor:
    """SD3's timestep shift: sigma = shift t / (1 + (shift - 1) t) (identity at shift 1)."""
    return t if shift == 1.0 else shift * t / (1 + (shift - 1) * t)


class FlowSigmas(_ContinuousTable):
    """Discrete flow timesteps 1..steps (of `multiplier`), shifted: t = sigma * multiplier."""

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, steps: int = 1000):
        self.shift, self.multiplier = shift, multiplier
        super().__init__(self.t_to_sigma(torch.arange(1, steps + 1) / steps * multiplier))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.multiplier

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return time_shift(self.shift, t / self.multiplier)


class FluxSigmas(_ContinuousTable):
    """Forge's PredictionFlux: a table of sigma = e^mu / (e^mu + (1/t - 1)) at t = i/steps with mu = `shift`;
    the timestep is sigma itself and t -> sigma is the identity too (unlike ComfyUI's ModelSamplingFlux, which
    shifts it), so the schedules that go through timesteps (Normal, SGM Uniform) are linear in sigma."""

    def __init__(self, shift: float = 1.15, steps: int = 10000):
        self.shift = shift
        t = torch.arange(1, steps + 1, 1) / steps
        super().__init__(math.exp(shift) / (math.exp(shift) + (1 / t - 1) ** 1.0))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t
