"""Load models (models.loaded.LoadedModel); with models.loaded the only modules that import diffusers
pipelines (inside functions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError, RuntimeFailure
from sdcli.families import Detected, check_refiner_pair, detect_folder, pipeline_class
from sdcli.models.loaded import LoadedModel
from sdcli.models.quiet import quiet_libraries
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import TORCH_DTYPES, RuntimePlan
from sdcli.models.startup import end as end_start_pause
from sdcli.request.storage import Storage, storage_of
from sdcli.request.vocabulary import PREDICTION_TYPES
from sdcli.sampling.samplers import SamplerChoice


def load_model(model: ModelRef, plan: RuntimePlan) -> LoadedModel:
    """Load the base pipeline of a local folder or single file (safetensors only), apply the plan, and
    settle what the loaded weights show (SD 2.x: eps or v).

    Other modes share its weights through LoadedModel.for_mode().
    """
    import diffusers  # noqa: F401 (imported before quiet_libraries so its progress bars are switched off)
    import torch

    quiet_libraries()
    dtype = getattr(torch, TORCH_DTYPES[plan.dtype])
    row = storage_of(model.storage)
    if model.kind == "single-file":
        if row is not None and row.quantized:  # job.plan refuses it first
            raise ModelError(f"--quantize: {model.path.name}: quantized loading takes diffusers folders only")
        pipe, detected = _load_single_file(model, dtype)
    else:
        pipe, detected = _load_folder(model, dtype, row, model.storage_encoders)
    pipe.set_progress_bar_config(disable=True)
    loaded = LoadedModel(pipe, detected, pipe.scheduler, name=model.name)
    if (vae := dict(model.parts).get("vae")) is not None:  # built with it: a --vae naming it is in place already
        loaded.addons.vae_path = vae
    if row is not None and not row.quantized:
        store_low_bits(loaded, row, dtype)
    apply_memory_options(loaded, plan)
    loaded.detected = detected.family.settle(pipe, detected)
    loaded.base_scheduler = pipe.scheduler
    end_start_pause()  # ended before the weights loaded (pipeline_type); here for any loader that does not use it
    return loaded


def pipeline_type(name: str) -> Any:
    """The diffusers pipeline class `name`, its modules (and the model classes it names) imported. A command's
    start ends here (models.startup): the libraries are in, no weights are loaded yet."""
    import diffusers

    cls = getattr(diffusers, name)
    end_start_pause()
    return cls


def store_low_bits(model: LoadedModel, row: Storage, dtype: Any) -> None:
    """Keep the diffusion model's weights in the row's storage dtype (fp8) and compute in `dtype`, as Forge's
    "Diffusion in Low Bits": diffusers' layerwise casting (each layer upcast for its call; norms and embeddings
    stay)."""
    import torch

    network = model.family.network_module(model.pipe)
    network.enable_layerwise_casting(storage_dtype=getattr(torch, str(row.storage_dtype)), compute_dtype=dtype)


def _load_single_file(model: ModelRef, dtype: Any) -> tuple[Any, Detected]:
    """A single file: a flow transformer with its parts (FILE_LOADERS), else a WebUI checkpoint."""
    from sdcli.models.single_file import inspect, load_single_file

    detected = inspect(model.path)
    if detected.family.network_component != "transformer" or detected.family.checkpoint_file:
        return load_single_file(model.path, dtype)
    parts = detected.family.file_parts
    if parts is None:
        raise ModelError(f"--model: {model.path.name} is a {detected.family.label} transformer file; sdcli loads "
                         f"{detected.family.label} from diffusers folders only (no single files yet)")
    load = FILE_LOADERS[parts.loader]
    pipeline = pipeline_class(detected, first_mode(detected))
    pipeline_type(pipeline)
    return load(model, detected, pipeline, dtype), detected


def _load_flux_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    from sdcli.models.flux_pipeline import load_flux_files

    return load_flux_files(model, detected, pipeline, dtype)


def _load_zimage_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    from sdcli.models.zimage_files import load_zimage_files

    return load_zimage_files(model, detected, pipeline, dtype)


def _load_chroma_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    from sdcli.models.chroma_files import load_chroma_files

    return load_chroma_files(model, detected, pipeline, dtype)


def _load_qwenimage_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    from sdcli.models.qwenimage_files import load_qwenimage_files

    return load_qwenimage_files(model, detected, pipeline, dtype)


def _load_flux2_files(model: ModelRef, detected: Detected, pipeline: str, dtype: Any) -> Any:
    from sdcli.models.flux2_files import load_flux2_files

    return load_flux2_files(model, detected, pipeline, dtype)


# Family.file_parts.loader -> the builder of a transformer file's pipeline (its parts: ModelRef.parts).
FILE_LOADERS: dict[str, Callable[[ModelRef, Detected, str, Any], Any]] = {
    "flux": _load_flux_files, "zimage": _load_zimage_files, "chroma": _load_chroma_files,
    "qwenimage": _load_qwenimage_files, "flux2": _load_flux2_files}


def _load_folder(model: ModelRef, dtype: Any, row: Storage | None = None,
                 encoders: tuple[str, ...] = ()) -> tuple[Any, Detected]:
    """A diffusers folder through the pipeline class its family uses for txt2img (img2img: refiner); a quantized
    storage `row` quantizes its network (and the text encoders `encoders`) as they load (models.quantize)."""
    detected = detect_folder(model.path)
    _check_components(model.path)
    mode = first_mode(detected)
    extra = dict(detected.family.load_kwargs)
    if row is not None and row.quantized:
        from sdcli.models.quantize import pipeline_config

        extra["quantization_config"] = pipeline_config(row, detected.family.network_component, encoders, dtype)
    if (scheduler := _load_scheduler(model.path)) is not None:
        extra["scheduler"] = scheduler
    stand_ins = _processor_stand_ins(model.path)
    try:
        pipe = pipeline_type(pipeline_class(detected, mode)).from_pretrained(
            model.path, dtype=dtype, use_safetensors=True, local_files_only=True, **extra,
            **dict.fromkeys(stand_ins))  # left out by diffusers (its type check needs the class), put in below
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"--model: cannot load {model.path}: {str(exc).splitlines()[0]}") from None
    if made := {name: part for name, part in stand_ins.items() if part is not None}:
        pipe.register_modules(**made)
    return pipe, detected


def _processor_stand_ins(folder: Path) -> dict[str, Any]:
    """The folder's transformers processors that cannot be made here, each replaced: transformers 5's
    PixtralProcessor (Flux.2 dev's `tokenizer`) needs torchvision even for text. sdcli's encoders read only
    a processor's text tokenizer, and prepare images themselves (conditioning.flux2_upsample), so the
    `tokenizer` component gets its text tokenizer and another processor component is left out (None)."""
    import json

    import transformers

    stand_ins: dict[str, Any] = {}
    for name, value in json.loads((folder / "model_index.json").read_text()).items():
        if not (isinstance(value, list) and len(value) == 2 and value[0] == "transformers"
                and str(value[1]).endswith("Processor")):
            continue
        try:
            getattr(transformers, value[1]).from_pretrained  # noqa: B018
        except Exception:  # noqa: BLE001 - a placeholder class raises ImportError on any attribute
            stand_ins[name] = (transformers.AutoTokenizer.from_pretrained(folder / name, local_files_only=True)
                               if name == "tokenizer" else None)
    return stand_ins


def _check_components(folder: Path) -> None:
    """Every component model_index.json names (not null) has its folder: the missing one is named, rather than
    diffusers' "no file named config.json" about the model folder."""
    import json

    index = json.loads((folder / "model_index.json").read_text())
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or None in value or (folder / name).is_dir():
            continue
        raise ModelError(f"--model: {folder} has no {name}/ folder, which its model_index.json lists "
                         f"({value[-1]}); copy the model's {name}/ folder in")


def first_mode(detected: Detected) -> str:
    """The mode whose pipeline class a model is loaded as: txt2img where the family runs it (the SDXL
    refiner: img2img; Flux Fill: inpaint)."""
    return next(m for m in ("txt2img", "img2img", "inpaint") if m in detected.family.pipelines)


def detect_ref(model: ModelRef) -> Detected:
    """The family of a resolved model without loading it (single-file header or folder configs)."""
    if model.kind == "single-file":
        from sdcli.models.single_file import inspect

        return inspect(model.path)
    return detect_folder(model.path)


def check_refiner(model: ModelRef, refiner: ModelRef) -> None:
    """--refiner needs an SDXL model and an SDXL refiner (or base): checked before anything loads."""
    check_refiner_pair(detect_ref(model).family, detect_ref(refiner).family)


def apply_memory_options(model: LoadedModel, plan: RuntimePlan) -> None:
    """Placement, attention backend, memory options and compilation: placement.apply_plan (one owner)."""
    from sdcli.models.placement import apply_plan

    apply_plan(model, plan)


def set_sampler(model: LoadedModel, choice: SamplerChoice, prediction_type: str | None = None) -> None:
    """Swap in the chosen scheduler on the model's pipeline, built from the model's own scheduler config.

    `prediction_type` ("eps"/"v", from --prediction-type) overrides the model's.
    """
    import diffusers

    base = model.base_scheduler
    override = {"prediction_type": PREDICTION_TYPES[prediction_type]} if prediction_type else {}
    try:
        cls = getattr(diffusers, choice.sampler.scheduler)
        model.pipe.scheduler = build_scheduler(cls, dict(base.config), {**choice.scheduler_config, **override})
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
