"""Load pipelines: the only module that imports diffusers pipelines (inside functions)."""

from __future__ import annotations

from typing import Any

from sdcli.errors import ModelError, RuntimeFailure
from sdcli.families import FAMILIES, Detected, check_refiner_pair, detect_folder, pipeline_class
from sdcli.models.quiet import quiet_libraries
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import TORCH_DTYPES, RuntimePlan
from sdcli.sampling.samplers import SamplerChoice


def load_pipeline(model: ModelRef, plan: RuntimePlan) -> Any:
    """Load the base pipeline of a local folder or single file (safetensors only) and apply the plan.

    Other modes share its weights through pipeline_for().
    """
    import diffusers  # noqa: F401 (imported before quiet_libraries so its progress bars are switched off)
    import torch

    quiet_libraries()
    dtype = getattr(torch, TORCH_DTYPES[plan.dtype])
    if model.kind == "single-file":
        from sdcli.models.single_file import load_single_file, settle_prediction

        pipe = load_single_file(model.path, dtype)
    else:
        pipe = _load_folder(model, dtype)
    pipe.set_progress_bar_config(disable=True)
    apply_memory_options(pipe, plan)
    if model.kind == "single-file":
        settle_prediction(pipe)  # SD 2.x eps or v, when the file does not say
    pipe.sdcli_base_scheduler = pipe.scheduler
    return pipe


def _load_folder(model: ModelRef, dtype: Any) -> Any:
    """A diffusers folder through the pipeline class its family uses for txt2img (img2img: refiner)."""
    import diffusers

    detected = detect_folder(model.path)
    mode = "txt2img" if "txt2img" in detected.family.pipelines else "img2img"
    extra = dict(detected.family.load_kwargs)
    if (scheduler := _load_scheduler(model.path)) is not None:
        extra["scheduler"] = scheduler
    try:
        pipe = getattr(diffusers, pipeline_class(detected, mode)).from_pretrained(
            model.path, dtype=dtype, use_safetensors=True, local_files_only=True, **extra)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"--model: cannot load {model.path}: {str(exc).splitlines()[0]}") from None
    pipe.sdcli_detected = detected
    return pipe


def detect_ref(model: ModelRef) -> Detected:
    """The family of a resolved model without loading it (single-file header or folder configs)."""
    if model.kind == "single-file":
        from sdcli.models.single_file import inspect

        return inspect(model.path)
    return detect_folder(model.path)


def check_refiner(model: ModelRef, refiner: ModelRef) -> None:
    """--refiner needs an SDXL model and an SDXL refiner (or base): checked before anything loads."""
    check_refiner_pair(detect_ref(model).family, detect_ref(refiner).family)


# UNet input channels each mode accepts: 4 = an ordinary checkpoint (inpaints by blending
# latents with the mask), 9 = a dedicated inpainting checkpoint (latents + mask + masked-image latents).
MODE_CHANNELS: dict[str, tuple[int, ...]] = {"txt2img": (4,), "img2img": (4,), "inpaint": (4, 9), "outpaint": (4, 9)}
UNET_KINDS = {4: "an ordinary checkpoint", 9: "a dedicated inpainting checkpoint"}


def detected_of(pipe: Any) -> Detected:
    """What sdcli knows about a loaded pipeline's model (families table row, channels, prediction)."""
    if (known := getattr(pipe, "sdcli_detected", None)) is not None:
        return known
    # A pipeline built elsewhere (tests): its class and components tell the family.
    xl = hasattr(pipe, "text_encoder_2")
    name = ("sdxl" if pipe.text_encoder is not None else "sdxl-refiner") if xl else "sd1"
    prediction = "v" if pipe.scheduler.config.get("prediction_type") == "v_prediction" else "eps"
    return Detected(FAMILIES[name], pipe.unet.config.in_channels, prediction, False)


def pipeline_for(pipe: Any, mode: str) -> Any:
    """The pipeline for `mode` sharing `pipe`'s loaded weights (diffusers' from_pipe: no second load).

    The families table names the class; the UNet's input channels decide what it can do;
    a mismatch is a usage error.
    """
    import diffusers

    detected = detected_of(pipe)
    cls = pipeline_class(detected, mode)
    channels = MODE_CHANNELS[mode]
    in_channels = pipe.unet.config.in_channels
    if in_channels not in channels:
        hint = "; use sdcli inpaint or outpaint with it" if in_channels == 9 else ""
        raise ModelError(f"--model: {mode} needs a UNet with {' or '.join(map(str, channels))} input channels; "
                         f"this model's has {in_channels} ({UNET_KINDS.get(in_channels, 'an unknown kind')}){hint}")
    if type(pipe).__name__ == cls:
        return pipe
    moved = getattr(diffusers, cls).from_pipe(pipe)
    moved.set_progress_bar_config(disable=True)
    moved.sdcli_base_scheduler = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    moved.sdcli_detected = detected
    return moved


def apply_memory_options(pipe: Any, plan: RuntimePlan) -> None:
    """Placement, attention backend, memory options and compilation: runtime.apply_plan (one owner)."""
    from sdcli.models.runtime import apply_plan

    apply_plan(pipe, plan)


PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction"}  # --prediction-type -> diffusers' name


def set_sampler(pipe: Any, choice: SamplerChoice, prediction_type: str | None = None) -> None:
    """Swap in the chosen scheduler, built from the model's own scheduler config.

    `prediction_type` ("eps"/"v", from --prediction-type) overrides the model's.
    """
    import diffusers

    base = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    override = {"prediction_type": PREDICTION_TYPES[prediction_type]} if prediction_type else {}
    try:
        cls = getattr(diffusers, choice.sampler.scheduler)
        pipe.scheduler = build_scheduler(cls, dict(base.config), {**choice.scheduler_config, **override})
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
