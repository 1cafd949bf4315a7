"""Noise sources as the WebUI makes them ("Random number generator source", `RNG` key).

`ImageNoise` gives each image its own generator seeded with its seed: the first
draw is the start noise (slerped towards the variation seed's noise), every later
draw is the sampler's noise (ancestral steps, churn), from the same generator or,
with an eta noise seed delta (ENSD), from one reseeded seed+ENSD. Sources:
cpu (torch's CPU generator), gpu (torch's generator on the model's device) and
nv (the Philox 4x32-10 + Box-Muller generator that NVIDIA GPUs use for randn,
computed on the CPU so GPU-made WebUI images can be remade anywhere), and comfy
(ComfyUI's noise, comfy/sample.py prepare_noise: ONE CPU generator seeded with the
first seed draws the whole [B, C, H, W] batch latent; its samplers' noise comes from
one generator on the model's device seeded seed (seed + 1 on the CPU), as ComfyUI's
k-diffusion default_noise_sampler; no variation seeds or ENSD there).
Brownian-tree noise for the SDE samplers is seeded from the image seeds, as the
WebUI does. Imported lazily (torch, numpy).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_INV_2_32 = np.array([2.3283064e-10], dtype=np.float32)
_INV_2_32_2PI = np.array([2.3283064e-10 * 6.2831855], dtype=np.float32)


def _mul_hi_lo(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit halves of a 32x32-bit product."""
    product = a.astype(np.uint64) * np.uint64(m)
    return (product >> np.uint64(32)).astype(np.uint32), (product & np.uint64(0xFFFFFFFF)).astype(np.uint32)


class PhiloxGenerator:
    """torch.randn on CUDA reproduced on the CPU: Philox 4x32 (10 rounds), one Box-Muller value each.

    Each randn() call is one Philox "offset" (the counter's first word); element i
    uses subsequence i (the counter's third word); the key is the 64-bit seed.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        counter = [np.full(n, self.offset, np.uint32), np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32),
                   np.zeros(n, np.uint32)]
        self.offset += 1
        key = [np.full(n, self.seed & 0xFFFFFFFF, np.uint32), np.full(n, (self.seed >> 32) & 0xFFFFFFFF, np.uint32)]
        with np.errstate(over="ignore"):
            for round_ in range(10):
                hi0, lo0 = _mul_hi_lo(counter[0], _PHILOX_M[0])
                hi2, lo2 = _mul_hi_lo(counter[2], _PHILOX_M[1])
                counter = [hi2 ^ counter[1] ^ key[0], lo2, hi0 ^ counter[3] ^ key[1], lo0]
                if round_ < 9:
                    key = [key[0] + np.uint32(_PHILOX_W[0]), key[1] + np.uint32(_PHILOX_W[1])]
        u = counter[0] * _INV_2_32 + _INV_2_32 / 2
        v = counter[1] * _INV_2_32_2PI + _INV_2_32_2PI / 2
        return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32).reshape(shape)


_ON_CPU = ("cpu", "comfy")  # sources whose generator is torch's CPU one


def make_generator(source: str, seed: int, device: Any) -> Any:
    """One seeded generator of the given source."""
    if source == "nv":
        return PhiloxGenerator(seed)
    return torch.Generator("cpu" if source in _ON_CPU else device).manual_seed(int(seed))


def draw(source: str, generator: Any, shape: tuple[int, ...], device: Any) -> torch.Tensor:
    """The next unit-Gaussian tensor from a generator, on `device`, float32."""
    if source == "nv":
        return torch.from_numpy(generator.randn(shape)).to(device)
    where = "cpu" if source in _ON_CPU else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The WebUI's variation-seed interpolation of two [C, H, W] noises.

    As the WebUI (from a PyTorch forum post): norms and dot products run along dim 1,
    so each (channel, column) is interpolated on its own; the near-parallel fallback
    weighs the two the other way round, as there.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * t + high * (1 - t)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / so).unsqueeze(1) * low + (torch.sin(t * omega) / so).unsqueeze(1) * high


class ImageNoise:
    """Per-image noise for one batch: start noise first, then sampler noise (see module doc)."""

    def __init__(self, source: str, shape: tuple[int, ...], seeds: list[int], device: Any, *,
                 subseeds: list[int | None] | None = None, subseed_strength: float = 0.0, ensd: int = 0):
        self.source, self.shape, self.seeds, self.device = source, tuple(shape), list(seeds), device
        self.subseeds, self.subseed_strength, self.ensd = subseeds, subseed_strength, ensd
        self.generators = [make_generator(source, s, device) for s in self.seeds]
        self.batch_generator: Any = None  # comfy: the one generator of the samplers' noise

    def first(self) -> torch.Tensor:
        """[B, C, H, W] start noise (unit variance), variation seeds applied."""
        if self.source == "comfy":
            return self._comfy_first()
        noises = []
        for i, generator in enumerate(self.generators):
            noise = draw(self.source, generator, self.shape, self.device)
            subseed = self.subseeds[i] if self.subseeds else None
            if self.subseed_strength and subseed is not None:
                sub = draw(self.source, make_generator(self.source, subseed, self.device), self.shape, self.device)
                noise = slerp(self.subseed_strength, noise, sub)
            noises.append(noise)
        if self.ensd:
            self.generators = [make_generator(self.source, s + self.ensd, self.device) for s in self.seeds]
        return torch.stack(noises)

    def _comfy_first(self) -> torch.Tensor:
        """ComfyUI's start noise: the whole batch from one CPU generator; its samplers' generator set up."""
        batch = (len(self.seeds), *self.shape)
        noise = torch.randn(batch, generator=self.generators[0], device="cpu").to(self.device)
        on_cpu = torch.device(self.device).type == "cpu"
        self.batch_generator = torch.Generator(self.device).manual_seed(self.seeds[0] + (1 if on_cpu else 0))
        return noise

    def next(self) -> torch.Tensor:
        """[B, C, H, W] sampler noise: each image's generator continues (comfy: the batch's one generator)."""
        if self.source == "comfy":
            if self.batch_generator is None:
                self._comfy_first()
            return torch.randn((len(self.seeds), *self.shape), generator=self.batch_generator, device=self.device)
        return torch.stack([draw(self.source, g, self.shape, self.device) for g in self.generators])

    def sampler(self) -> Callable[[Any, Any], torch.Tensor]:
        """A k-diffusion noise sampler drawing from the image generators."""
        return lambda _sigma, _sigma_next: self.next()


def brownian_noise(x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]) -> Callable[[Any, Any], torch.Tensor]:
    """Brownian-tree noise over [min positive sigma, max sigma], one tree per image seed (torchsde).

    Returns noise(sigma, sigma_next): the tree's increment scaled to unit variance. The sigmas may be
    tensors or host floats (the loop's sigma levels): the trees take floats, so host floats spare a
    device read per query; the scale is computed in the sigmas' dtype either way (same noise).
    """
    import torchsde

    t0, t1 = sigmas[sigmas > 0].min(), sigmas.max()
    w0 = torch.zeros_like(x)[0]
    trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds]

    def noise(sigma: Any, sigma_next: Any) -> torch.Tensor:
        a, b = torch.as_tensor(sigma, dtype=sigmas.dtype), torch.as_tensor(sigma_next, dtype=sigmas.dtype)
        lo, hi, sign = (sigma, sigma_next, 1) if sigma < sigma_next else (sigma_next, sigma, -1)
        with warnings.catch_warnings():  # exp(log(sigma)) may pass the tree's ends by an ulp: harmless
            warnings.simplefilter("ignore", UserWarning)
            w = torch.stack([tree(lo, hi) for tree in trees]) * sign  # increments run backwards as sigma falls
        return w / (b - a).abs().sqrt().to(w.device)

    return noise
