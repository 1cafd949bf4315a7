"""The CFG denoiser: the network (its family's adapter) wrapped as k-diffusion's model(x, sigma) -> denoised.

As the WebUI (k-diffusion's CompVisDenoiser / CompVisVDenoiser and
sd_samplers_cfg_denoiser.py): the model's parameterisation (sampling.parameterisation:
eps, v, flow) scales the input, gives the network's timestep t(sigma) and turns its
output into a denoised latent, and guidance combines denoised latents: uncond + sum_i w_i * scale *
(cond_i - uncond) (several conds = `AND`). Conds and uncond share one UNet batch when
their token counts agree; otherwise they run apart (the WebUI pads neither). With a
mask (inpainting) the denoised latent is blended with the original under the mask.
Imported lazily (torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sdcli.conditioning.cond import Conditioning, cat
from sdcli.sampling.parameterisation import Parameterisation
from sdcli.sampling.schedules import SigmaTable

if TYPE_CHECKING:
    from sdcli.families.base import Control, NetworkAdapter

# Step -> [(conditioning for one image, weight)] (AND parts) and step -> uncond.
CondsAt = Callable[[int], list[tuple[Conditioning, float]]]
UncondAt = Callable[[int], Conditioning]


@dataclass
class Masking:
    """Inpainting: keep `init_latent` where mask is 1; `image_cond` feeds 9-channel UNets."""

    init_latent: torch.Tensor
    mask: torch.Tensor | None = None  # 1 = keep the original latent
    image_cond: torch.Tensor | None = None


class CFGDenoiser:
    """model(x, sigma) for the samplers; counts its calls (the WebUI's prompt-schedule step)."""

    def __init__(self, network: NetworkAdapter, param: Parameterisation, conds_at: CondsAt, uncond_at: UncondAt,
                 scale: float, masking: Masking | None = None):
        self.network, self.param = network, param
        self.conds_at, self.uncond_at, self.scale, self.masking = conds_at, uncond_at, scale, masking
        self.step = 0
        self.timesteps = False  # True: called with timesteps, returns guided eps (the timestep samplers)
        self.scale_multiplier = 1.0  # CFG++: the sampler scales the CFG scale (the WebUI's cond_scale_miltiplier)
        self.keep_uncond = False  # CFG++: keep the uncond output of each call in last_uncond
        self.last_uncond: torch.Tensor | None = None
        self.control: Any = None  # controlnet.hook.ControlHook: ControlNet residuals at each UNet call
        self.skip_uncond_at_1 = False  # Forge/ComfyUI: at CFG scale 1 the unconditional pass is skipped
        self._dtype_of: tuple[NetworkAdapter, torch.dtype] | None = None

    @property
    def network_dtype(self) -> torch.dtype:
        """The network's dtype, asked once per network: diffusers' ModelMixin.dtype walks every submodule
        (4 ms a call on the tiny UNet, as long as a third of its forward pass)."""
        if self._dtype_of is None or self._dtype_of[0] is not self.network:
            self._dtype_of = (self.network, self.network.dtype)
        return self._dtype_of[1]

    @property
    def sigmas(self) -> SigmaTable:
        """The model's sigma table (the parameterisation's)."""
        return self.param.table

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The discrete schedule the timestep samplers walk."""
        return self.param.alphas_cumprod

    def _control(self, marks: torch.Tensor | None) -> Control | None:
        """The ControlNet residuals for a UNet batch whose rows are cond (1) or uncond (0)."""
        if self.control is None or marks is None:
            return None
        return lambda x, t, cond: self.control.residuals(x, t, cond, marks)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning,
                 image_cond: torch.Tensor | None, marks: torch.Tensor | None = None) -> torch.Tensor:
        """One network batch -> denoised latents (the parameterisation's), or eps on timesteps."""
        if self.timesteps:
            return self._eps(x, sigma, cond, image_cond, marks)
        sigma = sigma.reshape(-1, 1, 1, 1)
        t = self.param.sigma_to_t(sigma.flatten())
        x_in = self.param.scale_input(x, sigma)
        if image_cond is not None:
            x_in = torch.cat([x_in, image_cond], dim=1)
        out = self.network(x_in.to(self.network_dtype), t, cond, self._control(marks)).to(x.dtype)
        return self.param.denoised(x, sigma, out)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, image_cond: torch.Tensor | None,
             marks: torch.Tensor | None = None) -> Any:
        """The noise prediction at integer timesteps t (v models: converted to eps)."""
        x_in = x if image_cond is None else torch.cat([x, image_cond], dim=1)
        out = self.network(x_in.to(self.network_dtype), t, cond, self._control(marks)).to(x.dtype)
        return self.param.eps_at_timestep(x, t, out)

    def _conditional_only(self, x: torch.Tensor, sigma: torch.Tensor,
                          parts: list[tuple[Conditioning, float]]) -> torch.Tensor:
        """CFG scale 1 without the unconditional pass, as Forge: the AND parts' predictions averaged by their
        weights, times the weights' sum when that is not 1 (one part of weight 1: its prediction itself)."""
        batch, k = x.shape[0], len(parts)
        image_cond = self.masking.image_cond if self.masking else None
        ic_in = None if image_cond is None or k == 1 else image_cond.repeat_interleave(k, dim=0)
        rows = cat([c.repeat(1) for _ in range(batch) for c, _ in parts]) if k > 1 else parts[0][0].repeat(batch)
        x_in, sigma_in = (x, sigma) if k == 1 else (x.repeat_interleave(k, dim=0), sigma.repeat_interleave(k))
        out = self._denoise(x_in, sigma_in, rows, image_cond if k == 1 else ic_in, torch.ones(batch * k))
        if k == 1 and parts[0][1] == 1.0:
            denoised = out
        else:  # Forge's sums: weighted outputs and weights from 1e-37, in its (reversed) batch order
            out = out.reshape(batch, k, *x.shape[1:])
            total, count = torch.zeros_like(x), torch.ones_like(x) * 1e-37
            for j in reversed(range(k)):
                weight = torch.ones_like(x) * parts[j][1]
                total += out[:, j] * weight
                count += weight
            denoised = total / count
            strength = sum(w for _, w in parts)
            if not math.isclose(strength, 1.0):
                denoised = denoised * strength
        if not self.timesteps and self.masking is not None and self.masking.mask is not None:
            m = self.masking.mask
            denoised = self.masking.init_latent * m + (1 - m) * denoised
        self.step += 1
        return denoised

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.timesteps and self.masking is not None and self.masking.mask is not None:
            x = x * (1 - self.masking.mask) + self.masking.init_latent * self.masking.mask  # blend before, here
        batch = x.shape[0]
        sigma = sigma.to(x.device)
        sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma
        parts, uncond = self.conds_at(self.step), self.uncond_at(self.step)
        k = len(parts)
        if self.skip_uncond_at_1 and self.scale * self.scale_multiplier == 1.0 and not self.keep_uncond:
            return self._conditional_only(x, sigma, parts)
        # 1. Rows: each image once per AND part, then each image once for the uncond.
        x_in = torch.cat([x.repeat_interleave(k, dim=0), x])
        sigma_in = torch.cat([sigma.repeat_interleave(k), sigma])
        image_cond = self.masking.image_cond if self.masking else None
        ic_in = None if image_cond is None else torch.cat([image_cond.repeat_interleave(k, dim=0), image_cond])
        cond_rows = cat([c.repeat(1) for _ in range(batch) for c, _ in parts])
        uncond_rows = uncond.repeat(batch)
        # 2. One UNet batch when the token counts agree, else two (as the WebUI without "pad conds").
        n = batch * k
        marks = torch.cat([torch.ones(n), torch.zeros(batch)])  # cond rows 1, uncond rows 0 (ControlNet)
        if cond_rows.tokens == uncond_rows.tokens:
            out = self._denoise(x_in, sigma_in, cat([cond_rows, uncond_rows]), ic_in, marks)
        else:
            out = torch.cat([
                self._denoise(x_in[:n], sigma_in[:n], cond_rows, None if ic_in is None else ic_in[:n], marks[:n]),
                self._denoise(x_in[n:], sigma_in[n:], uncond_rows, None if ic_in is None else ic_in[n:],
                              marks[n:]),
            ])
        # 3. Guidance on denoised latents.
        base = out[batch * k:]
        if self.keep_uncond:
            self.last_uncond = base.clone()
        denoised, scale = base.clone(), self.scale * self.scale_multiplier
        for i in range(batch):
            for j, (_, weight) in enumerate(parts):
                denoised[i] += (out[i * k + j] - base[i]) * (weight * scale)
        # 4. Inpainting: the original latent where the mask keeps it.
        if not self.timesteps and self.masking is not None and self.masking.mask is not None:
            m = self.masking.mask
            denoised = self.masking.init_latent * m + (1 - m) * denoised
        self.step += 1
        return denoised
