"""The WebUI's refiner switch inside one sampler run (modules/sd_samplers_common.py apply_refiner).

Before each denoiser call the WebUI measures how far the run is: the index of the
model sigma nearest the current (largest) sigma, as (999 - index) / 1000 (for the
timestep samplers the timestep itself). From the first call where that reaches
`Refiner switch at`, the refiner's network and its own conditioning (re-encoded for it)
replace the base's, and the same sampler goes on. Imported lazily (torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sdcli.sampling.denoiser import CFGDenoiser, CondsAt, UncondAt

if TYPE_CHECKING:
    from sdcli.families.base import NetworkAdapter


@dataclass
class Refiner:
    """What the loop switches to: the refiner's network (its family's adapter) and its conditioning schedule."""

    network: NetworkAdapter
    conds_at: CondsAt
    uncond_at: UncondAt
    switch_at: float


def completed_ratio(denoiser: CFGDenoiser, sigma: torch.Tensor) -> float:
    """How far the run is, as the WebUI's apply_refiner measures it (not by step count)."""
    if denoiser.timesteps:  # the timestep samplers pass the timestep itself
        timestep = int(torch.max(sigma).to(torch.int))
    else:
        sigmas = denoiser.sigmas.sigmas.to(sigma.device)
        timestep = int(torch.argmin(torch.abs(sigmas - torch.max(sigma))))
    return (999 - timestep) / 1000


class RefinedDenoiser(CFGDenoiser):
    """A CFG denoiser that hands over to `refiner` once the run reaches its switch point."""

    refiner: Refiner | None = None
    switched = False

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        refiner = self.refiner
        if refiner is not None and not self.switched and completed_ratio(self, sigma) >= refiner.switch_at:
            self.network, self.conds_at, self.uncond_at = refiner.network, refiner.conds_at, refiner.uncond_at
            if self.masking is not None and refiner.network.in_channels == x.shape[1]:
                self.masking.image_cond = None  # a refiner that takes the latent only: no inpainting input
            self.switched = True
        return super().__call__(x, sigma)
