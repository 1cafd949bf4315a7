"""The CFG denoiser: the UNet wrapped as k-diffusion's model(x, sigma) -> denoised.

As the WebUI (k-diffusion's CompVisDenoiser / CompVisVDenoiser and
sd_samplers_cfg_denoiser.py): the input is scaled by 1/sqrt(sigma^2+1), the UNet
sees the continuous timestep t(sigma), its eps or v output becomes a denoised
latent, and guidance combines denoised latents: uncond + sum_i w_i * scale *
(cond_i - uncond) (several conds = `AND`). Conds and uncond share one UNet batch when
their token counts agree; otherwise they run apart (the WebUI pads neither). With a
mask (inpainting) the denoised latent is blended with the original under the mask.
Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning, cat
from sdcli.sampling.schedules import ModelSigmas

# Step -> [(conditioning for one image, weight)] (AND parts) and step -> uncond.
CondsAt = Callable[[int], list[tuple[Conditioning, float]]]
UncondAt = Callable[[int], Conditioning]


def unet_call(unet: Any, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
              control: Callable[..., dict[str, Any]] | None = None) -> torch.Tensor:
    """The one place the UNet runs: latents, timesteps, text states and any extra kwargs; `control`
    (sampling.control) adds ControlNet residuals for these rows."""
    extra = cond.extra if control is None else {**cond.extra, **control(x, t, cond)}
    return unet(x, t, encoder_hidden_states=cond.crossattn, return_dict=False, **extra)[0]


@dataclass
class Masking:
    """Inpainting: keep `init_latent` where mask is 1; `image_cond` feeds 9-channel UNets."""

    init_latent: torch.Tensor
    mask: torch.Tensor | None = None  # 1 = keep the original latent
    image_cond: torch.Tensor | None = None


class CFGDenoiser:
    """model(x, sigma) for the samplers; counts its calls (the WebUI's prompt-schedule step)."""

    def __init__(self, unet: Any, sigmas: ModelSigmas, prediction: str, conds_at: CondsAt, uncond_at: UncondAt,
                 scale: float, masking: Masking | None = None):
        self.unet, self.sigmas, self.v = unet, sigmas, prediction == "v_prediction"
        self.conds_at, self.uncond_at, self.scale, self.masking = conds_at, uncond_at, scale, masking
        self.step = 0
        self.timesteps = False  # True: called with timesteps, returns guided eps (the timestep samplers)
        self.scale_multiplier = 1.0  # CFG++: the sampler scales the CFG scale (the WebUI's cond_scale_miltiplier)
        self.keep_uncond = False  # CFG++: keep the uncond output of each call in last_uncond
        self.last_uncond: torch.Tensor | None = None
        self.control: Any = None  # sampling.control.ControlHook: ControlNet residuals at each UNet call

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.sigmas.alphas_cumprod

    def _control(self, marks: torch.Tensor | None) -> Callable[..., dict[str, Any]] | None:
        """The ControlNet residuals for a UNet batch whose rows are cond (1) or uncond (0)."""
        if self.control is None or marks is None:
            return None
        return lambda x, t, cond: self.control.residuals(x, t, cond, marks)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning,
                 image_cond: torch.Tensor | None, marks: torch.Tensor | None = None) -> torch.Tensor:
        """One UNet batch -> denoised latents (CompVis eps or v parameterisation), or eps on timesteps."""
        if self.timesteps:
            return self._eps(x, sigma, cond, image_cond, marks)
        sigma = sigma.reshape(-1, 1, 1, 1)
        c_in = 1 / (sigma ** 2 + 1) ** 0.5  # sigma_data = 1
        t = self.sigmas.sigma_to_t(sigma.flatten())
        x_in = x * c_in
        if image_cond is not None:
            x_in = torch.cat([x_in, image_cond], dim=1)
        out = unet_call(self.unet, x_in.to(self.unet.dtype), t, cond, self._control(marks)).to(x.dtype)
        if self.sigmas.lcm:  # the WebUI's LCM wrap: eps (whatever the model predicts), LCM's boundary scalings
            scaled_t = t.reshape(-1, 1, 1, 1) * 10.0
            skip, scale = 0.25 / (scaled_t ** 2 + 0.25), scaled_t / (scaled_t ** 2 + 0.25) ** 0.5  # sigma_data 0.5
            return scale * (x + out * -sigma) + skip * x
        if self.v:  # c_out and c_skip of the v parameterisation, evaluated as k-diffusion does
            return out * (-sigma / (sigma ** 2 + 1) ** 0.5) + x * (1 / (sigma ** 2 + 1))
        return x + out * -sigma

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, image_cond: torch.Tensor | None,
             marks: torch.Tensor | None = None) -> Any:
        """The noise prediction at integer timesteps t (v models: converted to eps)."""
        x_in = x if image_cond is None else torch.cat([x, image_cond], dim=1)
        out = unet_call(self.unet, x_in.to(self.unet.dtype), t, cond, self._control(marks)).to(x.dtype)
        if not self.v:
            return out
        a = self.alphas_cumprod.to(x.device)[t.to(torch.int)].reshape(-1, 1, 1, 1)
        return a.sqrt() * out + (1 - a).sqrt() * x

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.timesteps and self.masking is not None and self.masking.mask is not None:
            x = x * (1 - self.masking.mask) + self.masking.init_latent * self.masking.mask  # blend before, here
        batch = x.shape[0]
        sigma = sigma.to(x.device)
        sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma
        parts, uncond = self.conds_at(self.step), self.uncond_at(self.step)
        k = len(parts)
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
