"""Other tools' sampler and scheduler names -> the WebUI's (one table per tool, declared once).

Each table maps a tool's own name to (WebUI sampler, WebUI schedule type or None for the
sampler's Automatic). A name missing from a table has no WebUI equivalent: it is shown as
the tool wrote it, and replay refuses it. Pure: no torch, no PIL.
"""

from __future__ import annotations

# ComfyUI's KSampler sampler_name (comfy/samplers.py KSAMPLER_NAMES) -> WebUI sampler: the ones that run the same
# k-diffusion function (its uni_pc, lcm and restart are its own, so they are left out). Its "ddim" runs
# k-diffusion's Euler (comfy/samplers.py: ksampler("euler") for "ddim"), so it maps to Euler.
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddim": "Euler", "res_multistep": "Res Multistep",
}
# ComfyUI's scheduler (comfy/samplers.py SCHEDULER_NAMES) -> WebUI Schedule type.
COMFY_SCHEDULES = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Comfy Beta", "kl_optimal": "KL Optimal",
    "Flux2Scheduler": "Flux2",  # the Flux2Scheduler node (sigmas of its own; sources.comfyui)
}

# InvokeAI's scheduler (invokeai/backend/stable_diffusion/schedulers/schedulers.py; "_k": Karras sigmas) and its
# legacy `k_*` sampler names -> (WebUI sampler, schedule).
INVOKEAI_SAMPLERS: dict[str, tuple[str, str | None]] = {
    "ddim": ("DDIM", None), "pndm": ("PLMS", None), "lms": ("LMS", None), "lms_k": ("LMS", "Karras"),
    "heun": ("Heun", None), "heun_k": ("Heun", "Karras"), "euler": ("Euler", None), "euler_k": ("Euler", "Karras"),
    "euler_a": ("Euler a", None), "kdpm_2": ("DPM2", None), "kdpm_2_k": ("DPM2", "Karras"),
    "kdpm_2_a": ("DPM2 a", None), "kdpm_2_a_k": ("DPM2 a", "Karras"), "dpmpp_2m": ("DPM++ 2M", None),
    "dpmpp_2m_k": ("DPM++ 2M", "Karras"), "dpmpp_2m_sde": ("DPM++ 2M SDE", None),
    "dpmpp_2m_sde_k": ("DPM++ 2M SDE", "Karras"), "dpmpp_sde": ("DPM++ SDE", None),
    "dpmpp_sde_k": ("DPM++ SDE", "Karras"), "unipc": ("UniPC", None), "lcm": ("LCM", None),
    "plms": ("PLMS", None), "k_lms": ("LMS", None), "k_euler": ("Euler", None), "k_euler_a": ("Euler a", None),
    "k_heun": ("Heun", None), "k_dpm_2": ("DPM2", None), "k_dpm_2_a": ("DPM2 a", None),
    "k_dpmpp_2": ("DPM++ 2M", None), "k_dpmpp_2_a": ("DPM++ 2S a", None),
}

# NovelAI's sampler and noise_schedule -> WebUI sampler, schedule type.
NOVELAI_SAMPLERS = {
    "k_euler": "Euler", "k_euler_ancestral": "Euler a", "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_sde": "DPM++ SDE", "k_dpmpp_2m_sde": "DPM++ 2M SDE", "ddim": "DDIM",
    "ddim_v3": "DDIM", "k_lms": "LMS", "k_heun": "Heun", "k_dpm_2": "DPM2", "k_dpm_2_ancestral": "DPM2 a",
    "k_dpm_fast": "DPM fast", "k_dpm_adaptive": "DPM adaptive",
}
NOVELAI_SCHEDULES = {"native": None, "karras": "Karras", "exponential": "Exponential",
                     "polyexponential": "Polyexponential"}


def comfy_sampler(sampler: str | None, scheduler: str | None) -> tuple[dict[str, str], list[str]]:
    """WebUI `Sampler`/`Schedule type` for ComfyUI-named ones (ComfyUI, Fooocus, SwarmUI), and the names that
    do not map."""
    params: dict[str, str] = {}
    unmapped: list[str] = []
    if sampler is not None:
        params["Sampler"] = COMFY_SAMPLERS.get(sampler, sampler)
        if sampler not in COMFY_SAMPLERS:
            unmapped.append(f"sampler {sampler!r}")
    if scheduler is not None:
        params["Schedule type"] = COMFY_SCHEDULES.get(scheduler, scheduler)
        if scheduler not in COMFY_SCHEDULES:
            unmapped.append(f"scheduler {scheduler!r}")
    return params, unmapped

# Draw Things' sampler names -> (WebUI sampler, schedule type); its Trailing/Substep/TCD variants have none.
DRAWTHINGS_SAMPLERS: dict[str, tuple[str, str | None]] = {
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"), "Euler A": ("Euler a", None), "DDIM": ("DDIM", None),
    "PLMS": ("PLMS", None), "DPM++ SDE Karras": ("DPM++ SDE", "Karras"), "UniPC": ("UniPC", None),
    "LCM": ("LCM", None), "DPM++ 2M AYS": ("DPM++ 2M", "Align Your Steps"),
    "Euler A AYS": ("Euler a", "Align Your Steps"), "DPM++ SDE AYS": ("DPM++ SDE", "Align Your Steps"),
}
