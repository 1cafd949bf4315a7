"""Frozen generation requests and the one place they are validated. No torch here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from sdcli.core.errors import UsageError
from sdcli.core.samplers import DEFAULT_SAMPLER, SamplerChoice, resolve_sampler

MAX_SEED = 2**32 - 1
CLIP_SKIP_RANGE = (1, 12)
SIZE_RANGE = (8, 8192)


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. `width`/`height` None means the model's native size."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    count: int = 1
    sampler: str = DEFAULT_SAMPLER
    schedule: str = "automatic"
    clip_skip: int = 1
    subseed: int | None = None
    subseed_strength: float = 0.0
    mode: str = "txt2img"

    @property
    def total_images(self) -> int:
        return self.batch_size * self.count

    def seeds(self) -> list[int]:
        """Seed of each image in run order: image i gets seed + i."""
        if self.seed is None:
            raise ValueError("seed must be resolved first (with_resolved_seed)")
        return [self.seed + i for i in range(self.total_images)]

    def subseeds(self) -> list[int | None]:
        """Variation seed of each image (subseed + i), or None when variation is off."""
        if not self.subseed_strength:
            return [None] * self.total_images
        if self.subseed is None:
            raise ValueError("subseed must be resolved first (with_resolved_seed)")
        return [self.subseed + i for i in range(self.total_images)]

    def with_resolved_seed(self) -> GenerationRequest:
        """Replace random seeds (None or -1) by concrete ones, reported to the user."""
        resolved = self
        if self.seed is None or self.seed == -1:
            resolved = replace(resolved, seed=secrets.randbelow(MAX_SEED))
        if self.subseed_strength and (self.subseed is None or self.subseed == -1):
            resolved = replace(resolved, subseed=secrets.randbelow(MAX_SEED))
        return resolved


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run: device, precision and memory options (all 'auto'-able)."""

    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: str = "auto"
    xformers: bool = False
    offline: bool = False


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp16", "bf16", "fp32")
SWITCHES = ("auto", "on", "off")


def _check_range(flag: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UsageError(f"{flag}: {value} is out of range; use {low} to {high}")


def validate(request: GenerationRequest) -> SamplerChoice:
    """Check every field, naming the flag and value; return the resolved sampler."""
    _check_range("--steps", request.steps, 1, 1000)
    if request.cfg_scale < 0:
        raise UsageError(f"--cfg-scale: {request.cfg_scale} is negative; use 0 or more (7 is usual)")
    _check_range("--cfg-scale", request.cfg_scale, 0, 100)
    if request.seed is not None and request.seed != -1:
        _check_range("--seed", request.seed, 0, MAX_SEED)
    if request.subseed is not None and request.subseed != -1:
        _check_range("--subseed", request.subseed, 0, MAX_SEED)
    _check_range("--subseed-strength", request.subseed_strength, 0, 1)
    for flag, value in (("--width", request.width), ("--height", request.height)):
        if value is None:
            continue
        _check_range(flag, value, *SIZE_RANGE)
        if value % 8:
            lower, upper = value - value % 8, value - value % 8 + 8
            raise UsageError(f"{flag}: {value} is not a multiple of 8; try {lower or 8} or {upper}")
    _check_range("--batch-size", request.batch_size, 1, 64)
    _check_range("--count", request.count, 1, 100000)
    _check_range("--clip-skip", request.clip_skip, *CLIP_SKIP_RANGE)
    return resolve_sampler(request.sampler, request.schedule)


def validate_runtime(options: RuntimeOptions) -> None:
    """Check the device/precision flags (their availability is checked by the loader)."""
    for flag, value, allowed in (
        ("--device", options.device, DEVICES),
        ("--dtype", options.dtype, DTYPES),
        ("--attention-slicing", options.attention_slicing, SWITCHES),
    ):
        if value not in allowed:
            raise UsageError(f"{flag}: unknown value {value!r}; choose from {', '.join(allowed)}")
