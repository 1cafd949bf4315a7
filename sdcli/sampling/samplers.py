"""The sampler table: WebUI sampler names -> diffusers scheduler class + config.

Adding a sampler is one row in SAMPLERS. No torch or diffusers imports here; the
loader turns a resolved `SamplerChoice` into a scheduler with `from_config`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from sdcli.errors import UsageError

# WebUI v1.9 "Schedule type" -> scheduler config keys. "automatic" is resolved per sampler.
SCHEDULES: dict[str, dict[str, Any]] = {
    "uniform": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "sgm uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "trailing"},
}
SCHEDULE_LABELS = {
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "beta": "Beta",
    "sgm uniform": "SGM Uniform",
    "simple": "Simple",
}
SIGMA_SCHEDULES = ("uniform", "karras", "exponential", "beta", "sgm uniform", "simple")
SPACING_ONLY = ("uniform", "sgm uniform", "simple")


@dataclass(frozen=True)
class Sampler:
    """One WebUI sampler and its diffusers equivalent."""

    name: str
    scheduler: str
    config: dict[str, Any] = field(default_factory=dict)
    automatic: str = "uniform"
    schedules: tuple[str, ...] = SIGMA_SCHEDULES
    aliases: tuple[str, ...] = ()
    note: str = ""


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", automatic="karras", aliases=("k_dpmpp_2m",)),
    Sampler(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        automatic="exponential",
        aliases=("k_dpmpp_2m_sde",),
    ),
    Sampler("DPM++ SDE", "DPMSolverSDEScheduler", automatic="karras", aliases=("k_dpmpp_sde",)),
    Sampler(
        "DPM++ 2S a",
        "DPMSolverSinglestepScheduler",
        automatic="karras",
        schedules=("uniform", "karras", "exponential", "beta"),
        aliases=("k_dpmpp_2s_a",),
        note="near-equivalent: diffusers' DPMSolverSinglestepScheduler is not ancestral",
    ),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", schedules=SPACING_ONLY,
            aliases=("k_euler_a", "k_euler_ancestral", "euler_ancestral")),
    Sampler("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    Sampler("LMS", "LMSDiscreteScheduler", aliases=("k_lms",)),
    Sampler("Heun", "HeunDiscreteScheduler", aliases=("k_heun",)),
    Sampler("DPM2", "KDPM2DiscreteScheduler", automatic="karras", aliases=("k_dpm_2",)),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", automatic="karras", aliases=("k_dpm_2_a",)),
    Sampler("DDIM", "DDIMScheduler", schedules=SPACING_ONLY),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedules=SPACING_ONLY),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("LCM", "LCMScheduler", schedules=("uniform",)),  # LCM picks its own timesteps
)

# WebUI samplers with no diffusers equivalent: refused by name.
UNSUPPORTED = ("DPM fast", "DPM adaptive", "Restart", "DPM++ 3M SDE", "DPM++ 2M SDE Heun")

DEFAULT_SAMPLER = "DPM++ 2M"


@dataclass(frozen=True)
class SamplerChoice:
    """A sampler with its schedule resolved (never "automatic")."""

    sampler: Sampler
    schedule: str

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """Config overrides for `SchedulerClass.from_config(model_config, **overrides)`."""
        return {**self.sampler.config, **SCHEDULES[self.schedule]}

    @property
    def schedule_label(self) -> str:
        return SCHEDULE_LABELS[self.schedule]


def _key(text: str) -> str:
    """Lookup key: case, spaces, '-', '_' and '+' spelling do not matter."""
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("++", "pp"))


def _lookup_table() -> dict[str, tuple[Sampler, str | None]]:
    """Every accepted spelling -> (sampler, schedule joined into the name or None)."""
    table: dict[str, tuple[Sampler, str | None]] = {}
    for s in SAMPLERS:
        for spelling in (s.name, *s.aliases):
            table[_key(spelling)] = (s, None)
            for sched in s.schedules:
                if sched != "uniform":
                    table[_key(f"{spelling} {sched}")] = (s, sched)
            if spelling.startswith("k_") and "karras" in s.schedules:
                table[_key(spelling + "_ka")] = (s, "karras")
    return table


def _schedule_key(schedule: str) -> str:
    return " ".join(schedule.lower().replace("_", " ").replace("-", " ").split())


def sampler_names() -> list[str]:
    """Every joined WebUI-style name, for help and suggestions."""
    names = []
    for s in SAMPLERS:
        names.append(s.name)
        names += [f"{s.name} {SCHEDULE_LABELS[x]}" for x in s.schedules if x != "uniform"]
    return names


def resolve_sampler(name: str, schedule: str = "automatic") -> SamplerChoice:
    """Resolve a WebUI sampler name (v1.8 joined or v1.9 split) to a SamplerChoice.

    Raises UsageError naming the flag, with close matches, for unknown or unsupported names.
    """
    sched = _schedule_key(schedule)
    if sched != "automatic" and sched not in SCHEDULES:
        raise UsageError(
            f"--schedule: unknown schedule type {schedule!r}; "
            f"choose from automatic, {', '.join(SCHEDULES)}"
        )
    key = _key(name)
    if any(_key(u) == key or key.startswith(_key(u)) for u in UNSUPPORTED):
        raise UsageError(
            f"--sampler: {name!r} has no diffusers equivalent and is not supported; "
            f"try 'DPM++ 2M' or 'Euler a' (see `sdcli samplers`)"
        )
    found = _lookup_table().get(key)
    if found is None:
        close = difflib.get_close_matches(name, sampler_names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(f"--sampler: unknown sampler {name!r}{hint} (see `sdcli samplers`)")
    sampler, joined = found
    if joined is not None and sched not in ("automatic", joined):
        raise UsageError(
            f"--schedule: {schedule!r} conflicts with the schedule in --sampler {name!r}"
        )
    resolved = joined or (sampler.automatic if sched == "automatic" else sched)
    if resolved not in sampler.schedules:
        raise UsageError(
            f"--schedule: {sampler.name} does not support schedule {schedule!r}; "
            f"choose from automatic, {', '.join(sampler.schedules)}"
        )
    return SamplerChoice(sampler, resolved)
