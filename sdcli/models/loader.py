"""Load pipelines: the only module that imports diffusers pipelines (inside functions)."""

from __future__ import annotations

from typing import Any

from sdcli.errors import ModelError, RuntimeFailure
from sdcli.models.libraries import quiet_libraries
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import TORCH_DTYPES, RuntimePlan
from sdcli.sampling.samplers import SamplerChoice


def load_pipeline(model: ModelRef, plan: RuntimePlan) -> Any:
    """Load a text-to-image pipeline from a local folder (safetensors only) and apply the plan.

    Other modes share its weights through pipeline_for().
    """
    import diffusers
    import torch

    quiet_libraries()
    scheduler = _load_scheduler(model.path)
    try:
        pipe = getattr(diffusers, PIPELINES["txt2img"][0]).from_pretrained(
            model.path,
            **({"scheduler": scheduler} if scheduler is not None else {}),
            dtype=getattr(torch, TORCH_DTYPES[plan.dtype]),
            use_safetensors=True,
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"--model: cannot load {model.path}: {str(exc).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)
    apply_memory_options(pipe, plan)
    pipe.sdcli_base_scheduler = pipe.scheduler
    return pipe


# Generation mode -> the concrete diffusers pipeline that runs it, and the UNet input channels
# it accepts: 4 = an ordinary checkpoint (inpaints by blending latents with the mask),
# 9 = a dedicated inpainting checkpoint (latents + mask + masked-image latents).
# Concrete classes, not AutoPipeline*: importing an auto-pipeline imports every model
# family's pipeline module (ControlNet, Kandinsky, ...), about a second of start-up.
PIPELINES: dict[str, tuple[str, tuple[int, ...]]] = {
    "txt2img": ("StableDiffusionPipeline", (4,)),
    "img2img": ("StableDiffusionImg2ImgPipeline", (4,)),
    "inpaint": ("StableDiffusionInpaintPipeline", (4, 9)),
    "outpaint": ("StableDiffusionInpaintPipeline", (4, 9)),
}
UNET_KINDS = {4: "an ordinary checkpoint", 9: "a dedicated inpainting checkpoint"}


def pipeline_for(pipe: Any, mode: str) -> Any:
    """The pipeline for `mode` sharing `pipe`'s loaded weights (diffusers' from_pipe: no second load).

    The UNet's input channels decide what it can do; a mismatch is a usage error.
    """
    import diffusers

    auto_class, channels = PIPELINES[mode]
    in_channels = pipe.unet.config.in_channels
    if in_channels not in channels:
        hint = "; use sdcli inpaint or outpaint with it" if in_channels == 9 else ""
        raise ModelError(f"--model: {mode} needs a UNet with {' or '.join(map(str, channels))} input channels; "
                         f"this model's has {in_channels} ({UNET_KINDS.get(in_channels, 'an unknown kind')}){hint}")
    if auto_class == PIPELINES["txt2img"][0]:
        return pipe  # load_pipeline loads this kind
    moved = getattr(diffusers, auto_class).from_pipe(pipe)
    moved.set_progress_bar_config(disable=True)
    moved.sdcli_base_scheduler = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    return moved


def apply_memory_options(pipe: Any, plan: RuntimePlan) -> None:
    """Placement, attention backend, memory options and compilation: runtime.apply_plan (one owner)."""
    from sdcli.models.runtime import apply_plan

    apply_plan(pipe, plan)


def set_sampler(pipe: Any, choice: SamplerChoice) -> None:
    """Swap in the chosen scheduler, built from the model's own scheduler config."""
    import diffusers

    base = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    try:
        cls = getattr(diffusers, choice.sampler.scheduler)
        pipe.scheduler = build_scheduler(cls, dict(base.config), choice.scheduler_config)
    except ImportError as exc:  # e.g. DPM++ SDE needs torchsde
        raise RuntimeFailure(f"--sampler {choice.sampler.name}: {exc}") from None


def build_scheduler(cls: Any, config: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """What `cls.from_config(config, **overrides)` builds, without its side trip through every
    "compatible" scheduler class: that imports them all, and with them optional samplers'
    dependencies (torchsde, scipy) that only DPM++ SDE and LMS need."""
    import inspect

    defaults = set(config.get("_use_default_values", []))  # keys from_config leaves at the class default
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"} - set(cls.ignore_for_config)
    values = {k: v for k, v in config.items() if k in params and k not in defaults}
    values.update({k: v for k, v in overrides.items() if k in params})
    return cls(**values)


def _load_scheduler(folder: Any) -> Any:
    """The model's own scheduler, built by build_scheduler (see there); None lets diffusers load it."""
    import json
    from pathlib import Path

    import diffusers

    path = Path(folder) / "scheduler" / "scheduler_config.json"
    try:
        config = json.loads(path.read_text())
        return build_scheduler(getattr(diffusers, config["_class_name"]), config, {})
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
