"""ControlNet inside sdcli's loop, as the WebUI extension's UNet hook (scripts/hook.py) applies it.

At every UNet call each active unit's diffusers ControlNetModel turns the latent
(its first 4 channels: an inpainting UNet's extra channels are not its input),
the timestep, the text states (SDXL: the pooled text and size ids too) and the
control image into residuals for the UNet's skip connections and middle block;
the units' residuals add up (multi-ControlNet). Per unit, as the extension:

- Weight scales every residual; "My prompt is more important" and "ControlNet is
  more important" scale residual i of 13 by weight * 0.825 ** (12 - i) instead
  (SDXL: the first 10 of those 13), so deep blocks count most;
- "ControlNet is more important" also gives the control to the cond rows of the
  CFG batch only (the uncond rows run without it);
- Guidance Start/End: the unit is active while sampling_step / total steps lies in
  [start, end], where sampling_step is the WebUI's state.sampling_step: 0 until the
  sampler's first step callback, then the index of the step last completed.

Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning

SOFT_BASE = 0.825  # the extension's soft-injection factor per block


@dataclass
class ControlModel:
    """One unit, loaded: the ControlNetModel, its control image [1, 3, H, W] in [0, 1], and its settings."""

    net: Any
    hint: torch.Tensor
    weight: float
    start: float
    end: float
    soft: bool  # control mode prompt or controlnet
    cond_only: bool  # control mode controlnet

    def scales(self, n: int) -> list[float]:
        if self.soft:
            return [self.weight * SOFT_BASE ** float(12 - i) for i in range(13)][:n]
        return [self.weight] * n


class ControlHook:
    """The residuals of every active unit for one UNet call; the step is fed by the sampler's callback."""

    def __init__(self, units: list[ControlModel], total_steps: int):
        self.units, self.total = units, max(total_steps, 1)
        self.sampling_step = 0

    def follow(self, on_step: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
        """Start a batch: a step callback that tracks the step, then calls `on_step`."""
        self.sampling_step = 0

        def step(done: int, total: int) -> None:
            self.sampling_step = done - 1  # the WebUI sets state.sampling_step = i after step i
            if on_step is not None:
                on_step(done, total)

        return step

    def active(self) -> list[ControlModel]:
        percent = self.sampling_step / self.total
        return [u for u in self.units if u.start <= percent <= u.end]

    def residuals(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, cond_rows: torch.Tensor) -> dict:
        """UNet keyword arguments (down/mid residuals), {} when no unit is active at this step."""
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for unit in self.active():
            net = unit.net
            x_in = x[:, :net.config.in_channels].to(net.dtype)
            hint = unit.hint.to(x.device, net.dtype).expand(x.shape[0], -1, -1, -1)
            extra = {"added_cond_kwargs": cond.extra["added_cond_kwargs"]} if "added_cond_kwargs" in cond.extra \
                and net.config.addition_embed_type else {}
            timestep = t.to(x.device) if torch.is_tensor(t) else t
            with torch.no_grad():
                res_down, res_mid = net(x_in, timestep, encoder_hidden_states=cond.crossattn.to(net.dtype),
                                        controlnet_cond=hint, conditioning_scale=1.0, return_dict=False, **extra)
            outs = [*res_down, res_mid]
            mark = cond_rows.to(x.device, outs[0].dtype).reshape(-1, 1, 1, 1)
            outs = [o * s * (mark if unit.cond_only else 1) for o, s in zip(outs, unit.scales(len(outs)),
                                                                            strict=True)]
            if down is None:
                down, mid = outs[:-1], outs[-1]
            else:
                down = [a + b for a, b in zip(down, outs[:-1], strict=True)]
                mid = mid + outs[-1]
        if down is None:
            return {}
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}
