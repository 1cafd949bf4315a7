"""The CFG denoiser: the network (its family's adapter) wrapped as k-diffusion's model(x, sigma) -> denoised.

As the WebUI (k-diffusion's CompVisDenoiser / CompVisVDenoiser and
sd_samplers_cfg_denoiser.py): the model's parameterisation (sampling.parameterisation:
eps, v, flow) scales the input, gives the network's timestep t(sigma) and turns its
output into a denoised latent, and guidance combines denoised latents: uncond + sum_i w_i * scale *
(cond_i - uncond) (several conds = `AND`). Rows of one token count share one UNet batch;
rows of another run apart (the WebUI pads neither cond nor uncond). A batch of several
prompts (a prompt file's grouped lines) gives each image its own conditioning; its images
then equal the same images made alone, as for one prompt. With a
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
        self.image_conds: list[tuple[CondsAt, UncondAt]] | None = None  # each image's own (several prompts)
        self.cfg_norm: float | None = None  # ComfyUI's CFGNorm node: its strength (cfg_normed)
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

    def _image_conds(self, batch: int) -> list[tuple[list[tuple[Conditioning, float]], Conditioning]]:
        """Each image's AND parts and uncond at this step: its own (image_conds), else the one prompt's."""
        if self.image_conds is None:
            return [(self.conds_at(self.step), self.uncond_at(self.step))] * batch
        if len(self.image_conds) != batch:
            raise ValueError(f"{len(self.image_conds)} images' conditionings for a batch of {batch}")
        return [(conds_at(self.step), uncond_at(self.step)) for conds_at, uncond_at in self.image_conds]

    def _network_rows(self, x_in: torch.Tensor, sigma_in: torch.Tensor, rows: list[Conditioning],
                      image_cond: torch.Tensor | None, marks: torch.Tensor) -> torch.Tensor:
        """Denoised latents of rows (one conditioning row each): one network batch per token count, in order
        of first use (one prompt: cond and uncond together when their counts agree, else apart)."""
        counts: dict[int, list[int]] = {}
        for j, row in enumerate(rows):
            counts.setdefault(row.tokens, []).append(j)
        if len(counts) == 1:
            return self._denoise(x_in, sigma_in, cat(rows), image_cond, marks)
        parts = []
        for chosen in counts.values():
            at = _index(chosen, x_in.device)
            parts.append((at, self._denoise(x_in[at], sigma_in[at], cat([rows[j] for j in chosen]),
                                            None if image_cond is None else image_cond[at],
                                            marks[at if isinstance(at, slice) else chosen])))
        out = torch.empty((len(rows), *parts[0][1].shape[1:]), dtype=parts[0][1].dtype, device=parts[0][1].device)
        for at, part in parts:
            out[at] = part
        return out

    def _conditional_only(self, x: torch.Tensor, sigma: torch.Tensor,
                          images: list[tuple[list[tuple[Conditioning, float]], Conditioning]]) -> torch.Tensor:
        """CFG scale 1 without the unconditional pass, as Forge: the AND parts' predictions averaged by their
        weights, times the weights' sum when that is not 1 (one part of weight 1: its prediction itself)."""
        ks = [len(parts) for parts, _ in images]
        image_cond = self.masking.image_cond if self.masking else None
        rows = [c for parts, _ in images for c, _ in parts]
        out = self._network_rows(_each(x, ks), _each(sigma, ks), rows,
                                 None if image_cond is None else _each(image_cond, ks), torch.ones(len(rows)))
        if all(len(parts) == 1 and parts[0][1] == 1.0 for parts, _ in images):
            denoised = out
        else:  # Forge's sums: weighted outputs and weights from 1e-37, in its (reversed) batch order
            denoised, row = torch.empty_like(x), 0
            for i, (parts, _) in enumerate(images):
                total, count = torch.zeros_like(x[i]), torch.ones_like(x[i]) * 1e-37
                for j in reversed(range(len(parts))):
                    weight = torch.ones_like(x[i]) * parts[j][1]
                    total += out[row + j] * weight
                    count += weight
                denoised[i], row = total / count, row + len(parts)
                strength = sum(w for _, w in parts)
                if not math.isclose(strength, 1.0):
                    denoised[i] = denoised[i] * strength
        if self.cfg_norm is not None and not self.timesteps:  # ComfyUI runs it at CFG 1 too (cond: the result)
            denoised = cfg_normed(denoised, denoised, self.cfg_norm)
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
        images = self._image_conds(batch)
        if self.skip_uncond_at_1 and self.scale * self.scale_multiplier == 1.0 and not self.keep_uncond:
            return self._conditional_only(x, sigma, images)
        # 1. Rows: each image once per AND part, then each image once for the uncond.
        ks = [len(parts) for parts, _ in images]
        n = sum(ks)
        x_in, sigma_in = torch.cat([_each(x, ks), x]), torch.cat([_each(sigma, ks), sigma])
        image_cond = self.masking.image_cond if self.masking else None
        ic_in = None if image_cond is None else torch.cat([_each(image_cond, ks), image_cond])
        rows = [c for parts, _ in images for c, _ in parts] + [uncond for _, uncond in images]
        # 2. One network batch per token count (as the WebUI without "pad conds").
        marks = torch.cat([torch.ones(n), torch.zeros(batch)])  # cond rows 1, uncond rows 0 (ControlNet)
        out = self._network_rows(x_in, sigma_in, rows, ic_in, marks)
        # 3. Guidance on denoised latents.
        base = out[n:]
        if self.keep_uncond:
            self.last_uncond = base.clone()
        denoised, scale, row = base.clone(), self.scale * self.scale_multiplier, 0
        for i, (parts, _) in enumerate(images):
            for _, weight in parts:
                denoised[i] += (out[row] - base[i]) * (weight * scale)
                row += 1
        if self.cfg_norm is not None and not self.timesteps:  # on the first AND part's prediction
            firsts = [sum(ks[:i]) for i in range(batch)]
            denoised = cfg_normed(denoised, out[firsts], self.cfg_norm)
        # 4. Inpainting: the original latent where the mask keeps it.
        if not self.timesteps and self.masking is not None and self.masking.mask is not None:
            m = self.masking.mask
            denoised = self.masking.init_latent * m + (1 - m) * denoised
        self.step += 1
        return denoised


def cfg_normed(denoised: torch.Tensor, cond: torch.Tensor, strength: float) -> torch.Tensor:
    """ComfyUI's CFGNorm (comfy_extras/nodes_cfg.py, a post-CFG function on denoised latents): each latent
    pixel's guided prediction scaled by its cond prediction's norm over its own (channels, dim 1), the ratio
    clamped to [0, 1] (1e-8 added below), then times `strength`. Hand-written: no library has it."""
    ratio = torch.norm(cond, dim=1, keepdim=True) / (torch.norm(denoised, dim=1, keepdim=True) + 1e-8)
    return denoised * ratio.clamp(min=0.0, max=1.0) * strength


def _each(t: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """Row i of `t` repeated ks[i] times (an index tensor goes to the device only when the counts differ)."""
    if len(set(ks)) == 1:
        return t.repeat_interleave(ks[0], dim=0)
    return t.repeat_interleave(torch.tensor(ks, device=t.device), dim=0)


def _index(chosen: list[int], device: torch.device) -> slice | torch.Tensor:
    """Rows `chosen` as a slice when they are consecutive (no index tensor to copy to the device)."""
    if chosen == list(range(chosen[0], chosen[0] + len(chosen))):
        return slice(chosen[0], chosen[0] + len(chosen))
    return torch.tensor(chosen, device=device)
