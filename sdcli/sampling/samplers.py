"""The sampler table: WebUI sampler names -> how sdcli runs each one.

Adding a sampler is one row in SAMPLERS. A row names the k-diffusion function that
sdcli's own loop runs (sampling.loop) with the WebUI's per-sampler options, and the
diffusers scheduler that runs it where the loop does not (timestep samplers, other
model families). No torch or diffusers imports here.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from sdcli.errors import UsageError

# WebUI "Schedule type" (v1.10 sd_schedulers.py): key -> infotext label. sdcli's own loop
# computes every one (sampling.schedules); "automatic" is resolved per sampler.
WEBUI_SCHEDULE_LABELS = {
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "polyexponential": "Polyexponential",
    "sgm uniform": "SGM Uniform",
    "kl optimal": "KL Optimal",
    "align your steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
    "beta": "Beta",
}
# ComfyUI's schedule types the WebUI lacks (what a ComfyUI graph's scheduler maps to); every family takes them.
COMFY_SCHEDULE_LABELS = {"comfy beta": "Comfy Beta"}  # its beta: table sigmas, not the WebUI's interpolated Beta
SCHEDULE_LABELS = {**WEBUI_SCHEDULE_LABELS, **COMFY_SCHEDULE_LABELS}
SCHEDULES = tuple(SCHEDULE_LABELS)
# Schedule types that are a model family's own (ComfyUI nodes, not the WebUI's): key -> label. sdcli's loop computes
# them (sampling.schedules); a family names those it runs (families.base.Family.own_schedules), the others refuse them.
MODEL_SCHEDULE_LABELS = {"flux2": "Flux2"}  # ComfyUI's Flux2Scheduler node
ALL_SCHEDULE_LABELS = {**SCHEDULE_LABELS, **MODEL_SCHEDULE_LABELS}
# The diffusers-scheduler path (timestep samplers, families sdcli's loop does not run yet):
# schedule -> scheduler config keys, for the schedules diffusers has.
DIFFUSERS_SCHEDULES: dict[str, dict[str, Any]] = {
    "uniform": {"timestep_spacing": "linspace"},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "sgm uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "trailing"},
}
TIMESTEP_ONLY = ("uniform",)  # the WebUI's timestep samplers take no schedule type


@dataclass(frozen=True)
class Sampler:
    """One WebUI sampler: how sdcli runs it and the WebUI's per-sampler options.

    `function` names the sampling function (sampling.kdiffusion, timesteps, unipc, ...) that
    sdcli's loop runs (None: the diffusers `scheduler` runs it in the pipeline).
    `scheduler`/`config` are also the fallback for model families the loop does not run.
    The flags are the WebUI's sampler options of the same names.
    """

    name: str
    function: str | None
    scheduler: str
    config: dict[str, Any] = field(default_factory=dict)
    automatic: str = "uniform"
    schedules: tuple[str, ...] = SCHEDULES
    aliases: tuple[str, ...] = ()
    discard_penultimate: bool = False  # ask for one step more, drop the next-to-last sigma
    second_order: bool = False  # two model calls a step: prompt schedules count steps x 2
    brownian: bool = False  # noise from a Brownian tree seeded by the image seeds
    uses_ensd: bool = False  # draws sampler noise from the image RNG (eta noise seed delta applies)
    options: dict[str, Any] = field(default_factory=dict)  # extra sampling-function arguments
    timesteps: bool = False  # a timestep sampler (sampling.timesteps): integer timesteps, eta default 0
    loop_only: bool = False  # no diffusers equivalent: refused where sdcli's loop does not run
    lcm: bool = False  # the WebUI's LCM model wrap: its 50 timesteps and boundary scalings (schedules.LCMSigmas)
    flow_function: str | None = None  # its form on rectified-flow models (sampling.flow_samplers)
    flow_sound: bool = True  # False: its maths does not fit a flow model (refused there)
    note: str = ""


_SDE = {"algorithm_type": "sde-dpmsolver++"}
_LEADING = {"timestep_spacing": "leading", "steps_offset": 1}
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "sample_dpmpp_2m", "DPMSolverMultistepScheduler", automatic="karras",
            aliases=("k_dpmpp_2m",)),
    Sampler("DPM++ SDE", "sample_dpmpp_sde", "DPMSolverSDEScheduler", automatic="karras",
            aliases=("k_dpmpp_sde",), second_order=True, brownian=True),
    Sampler("DPM++ 2M SDE", "sample_dpmpp_2m_sde", "DPMSolverMultistepScheduler", _SDE, automatic="exponential",
            aliases=("k_dpmpp_2m_sde",), brownian=True),
    Sampler("DPM++ 2M SDE Heun", "sample_dpmpp_2m_sde", "DPMSolverMultistepScheduler",
            {**_SDE, "solver_type": "heun"}, automatic="exponential", aliases=("k_dpmpp_2m_sde_heun",),
            brownian=True, options={"solver_type": "heun"}),
    Sampler("DPM++ 2S a", "sample_dpmpp_2s_ancestral", "DPMSolverSinglestepScheduler", automatic="karras",
            aliases=("k_dpmpp_2s_a",), second_order=True, uses_ensd=True),
    Sampler("DPM++ 3M SDE", "sample_dpmpp_3m_sde", "DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3},
            automatic="exponential", aliases=("k_dpmpp_3m_sde",), discard_penultimate=True, brownian=True),
    Sampler("Euler a", "sample_euler_ancestral", "EulerAncestralDiscreteScheduler",
            aliases=("k_euler_a", "k_euler_ancestral", "euler_ancestral"), uses_ensd=True,
            flow_function="sample_euler_ancestral_RF"),
    Sampler("Euler", "sample_euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    Sampler("LMS", "sample_lms", "LMSDiscreteScheduler", aliases=("k_lms",)),
    Sampler("Heun", "sample_heun", "HeunDiscreteScheduler", aliases=("k_heun",), second_order=True),
    Sampler("DPM2", "sample_dpm_2", "KDPM2DiscreteScheduler", automatic="karras", aliases=("k_dpm_2",),
            discard_penultimate=True, second_order=True),
    Sampler("DPM2 a", "sample_dpm_2_ancestral", "KDPM2AncestralDiscreteScheduler", automatic="karras",
            aliases=("k_dpm_2_a",), discard_penultimate=True, second_order=True, uses_ensd=True,
            flow_function="sample_dpm_2_ancestral_RF"),
    Sampler("DPM fast", "sample_dpm_fast", "DPMSolverSinglestepScheduler", aliases=("k_dpm_fast",), uses_ensd=True,
            note="the diffusers fallback (other model families) is DPM-Solver singlestep"),
    Sampler("DPM adaptive", "sample_dpm_adaptive", "DPMSolverSinglestepScheduler", aliases=("k_dpm_ad",),
            uses_ensd=True, note="picks its own steps; the diffusers fallback is DPM-Solver singlestep"),
    Sampler("Restart", "sample_restart", "HeunDiscreteScheduler", {"use_karras_sigmas": True}, automatic="karras",
            aliases=("restart",), second_order=True, flow_sound=False,  # re-noises VE-style up to sigma 2
            note="the diffusers fallback (other model families) is Heun Karras, without restarts"),
    # The WebUI's timestep samplers visit t = 1, 1+1000//steps, ... ("leading", offset 1).
    Sampler("DDIM", "sample_ddim", "DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False, **_LEADING},
            schedules=TIMESTEP_ONLY, timesteps=True),
    Sampler("DDIM CFG++", "sample_ddim_cfgpp", "DDIMScheduler",
            {"clip_sample": False, "set_alpha_to_one": False, **_LEADING}, aliases=("ddim_cfgpp",),
            schedules=TIMESTEP_ONLY, timesteps=True, loop_only=True,
            note="CFG scale / 12.5, as the WebUI; sdcli's own loop only (SD 1.x/2.x)"),
    Sampler("PLMS", "sample_plms", "PNDMScheduler", {"skip_prk_steps": True, **_LEADING}, schedules=TIMESTEP_ONLY,
            timesteps=True),
    Sampler("UniPC", "sample_unipc", "UniPCMultistepScheduler",
            {"solver_order": 3, "lower_order_final": True, "timestep_spacing": "linspace"},
            schedules=TIMESTEP_ONLY, timesteps=True,
            note="bh1, order 3, time-uniform as the WebUI; the diffusers fallback (other families) is variant bh2"),
    # ComfyUI's res_multistep (Z-Image Turbo's template sampler), which the WebUI does not have: sdcli's loop only.
    Sampler("Res Multistep", "sample_res_multistep", "EulerDiscreteScheduler", aliases=("res_multistep",),
            loop_only=True, note="ComfyUI's res_multistep (eta 0); sdcli's loop only"),
    # The WebUI's LCM: a k-diffusion sampler on its own model wrap (50 LCM timesteps), every schedule type.
    # On rectified-flow models: ComfyUI's form (the schedule type on the model's own sigmas, flow re-noising).
    Sampler("LCM", "sample_lcm", "LCMScheduler", aliases=("k_lcm",), lcm=True, flow_function="sample_lcm_RF",
            note="the diffusers fallback (other model families) is LCMScheduler"),
)

DEFAULT_SAMPLER = "DPM++ 2M"


@dataclass(frozen=True)
class SamplerChoice:
    """A sampler with its schedule resolved (never "automatic"); `automatic`: resolved from "automatic"
    (a model family may then choose another: families.base.Family.settle_choice)."""

    sampler: Sampler
    schedule: str
    automatic: bool = False
    asked: str | None = None  # a schedule type a timestep sampler does not use, written as the WebUI writes it

    @property
    def written_label(self) -> str:
        """The infotext's `Schedule type`: the one asked for, as the WebUI writes it even where it has no effect."""
        return ALL_SCHEDULE_LABELS[self.asked or self.schedule]

    @property
    def unused_schedule_note(self) -> str:
        """A note for a schedule type the sampler does not use, or ""."""
        if self.asked is None:
            return ""
        return (f"--schedule: {self.sampler.name} runs on its own timesteps and does not use a schedule type; "
                f"{ALL_SCHEDULE_LABELS[self.asked]} has no effect (written in the infotext, as the WebUI does)")

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """Config overrides for `SchedulerClass.from_config(model_config, **overrides)` (diffusers path).

        Raises UsageError for a schedule type diffusers has no equivalent of."""
        if self.schedule not in DIFFUSERS_SCHEDULES:
            raise UsageError(f"--schedule: {self.schedule_label} needs sdcli's own sampler loop, "
                             f"which does not run this model family or sampler yet")
        return {**DIFFUSERS_SCHEDULES[self.schedule], **self.sampler.config}

    @property
    def schedule_label(self) -> str:
        return ALL_SCHEDULE_LABELS[self.schedule]


def img2img_steps(steps: int, strength: float) -> int:
    """How many of `steps` an img2img run denoises, as the WebUI counts them (its t_enc + 1)."""
    return int(min(strength, 0.999) * steps) + 1


def img2img_walk(steps: int, strength: float, comfy: bool = False) -> tuple[int, int]:
    """(schedule steps, t_enc) of a run from an input image: the last t_enc + 1 steps of that schedule are run.
    The WebUI's: img2img_steps of `steps`; `comfy`, ComfyUI's KSampler.set_steps (comfy/samplers.py): all `steps`
    of a schedule of int(steps / strength) steps (above 0.9999: of `steps`)."""
    if not comfy:
        return steps, img2img_steps(steps, strength) - 1
    return (steps if strength > 0.9999 else int(steps / strength)), steps - 1


def _key(text: str) -> str:
    """Lookup key: case, spaces, '-', '_' and '+' spelling do not matter."""
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("++", "pp"))


@functools.cache
def _lookup_table() -> dict[str, tuple[Sampler, str | None]]:
    """Every accepted spelling -> (sampler, schedule joined into the name or None); built once (a batch
    validates each line several times: rebuilding it cost ~3 ms each time). Read it, never change it."""
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


def sampler_row(name: str) -> Sampler:
    """The sampler a name (joined or not) means, schedule aside; UsageError as resolve_sampler for unknown names."""
    found = _lookup_table().get(_key(name))
    return found[0] if found is not None else resolve_sampler(name).sampler  # unknown: resolve_sampler's error


def resolve_sampler(name: str, schedule: str = "automatic") -> SamplerChoice:
    """Resolve a WebUI sampler name (v1.8 joined or v1.9 split) to a SamplerChoice.

    Raises UsageError naming the flag, with close matches, for unknown or unsupported names.
    """
    sched = _schedule_key(schedule)
    if sched != "automatic" and sched not in ALL_SCHEDULE_LABELS:
        raise UsageError(
            f"--schedule: unknown schedule type {schedule!r}; "
            f"choose from automatic, {', '.join(SCHEDULES)} (and a model's own: {', '.join(MODEL_SCHEDULE_LABELS)})"
        )
    key = _key(name)
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
    automatic = joined is None and sched == "automatic"
    resolved = joined or (sampler.automatic if automatic else sched)
    if resolved in MODEL_SCHEDULE_LABELS and not sampler.timesteps:  # every loop sampler walks it; the family checks
        return SamplerChoice(sampler, resolved, automatic)
    if resolved not in sampler.schedules and sampler.timesteps:  # the WebUI takes every type, and ignores it
        return SamplerChoice(sampler, sampler.automatic, automatic=False, asked=resolved)
    if resolved not in sampler.schedules:
        raise UsageError(
            f"--schedule: {sampler.name} does not support schedule {schedule!r}; "
            f"choose from automatic, {', '.join(sampler.schedules)}"
        )
    return SamplerChoice(sampler, resolved, automatic)
