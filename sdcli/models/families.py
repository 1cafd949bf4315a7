"""THE table of model families: how each is recognised, which pipelines serve it, its defaults.

Pure Python (no torch): detection works on tensor names and shapes, read from a
safetensors header (single files, original WebUI/ldm key layout) or on a diffusers
folder's model_index.json and UNet config. Adding a family = one row of FAMILIES.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdcli.errors import ModelError

Shapes = Mapping[str, Sequence[int]]

# Original (ldm/sgm) key prefixes of a WebUI single-file checkpoint.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_OPENCLIP = "cond_stage_model.model.token_embedding.weight"
SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
SDXL_CLIP_G = "conditioner.embedders.1.model.token_embedding.weight"
REFINER_CLIP_G = "conditioner.embedders.0.model.token_embedding.weight"
# Some SDXL fine-tunes trained for v-prediction mark it with an empty tensor of this name.
V_PRED_MARKER = "v_pred"

SD_PIPELINES = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
                "inpaint": "StableDiffusionInpaintPipeline", "outpaint": "StableDiffusionInpaintPipeline"}
XL_PIPELINES = {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
                "inpaint": "StableDiffusionXLInpaintPipeline", "outpaint": "StableDiffusionXLInpaintPipeline"}


@dataclass(frozen=True)
class Family:
    """One model family: detection, pipelines per mode, native size, prediction default."""

    name: str
    label: str  # for people
    detect: Callable[[Shapes], bool]  # on original-layout single-file keys
    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class; a missing mode is not servable
    native_size: int
    prediction: str = "eps"  # "eps" or "v": the default when the weights cannot tell
    is_xl: bool = False  # two text encoders, pooled embeds, size/crop conditioning
    configs: str = ""  # bundled config folder (sdcli/models/configs/<name>)


def _has(*keys: str) -> Callable[[Shapes], bool]:
    return lambda shapes: all(k in shapes for k in keys)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd1", "Stable Diffusion 1.x", _has(SD1_CLIP), SD_PIPELINES, 512, configs="sd1"),
    # SD 2.x: 512-base (eps) and 768-v (v) share one architecture; see guess_prediction.
    Family("sd2", "Stable Diffusion 2.x", _has(SD2_OPENCLIP), SD_PIPELINES, 768, prediction="v", configs="sd2"),
    Family("sdxl", "Stable Diffusion XL", _has(SDXL_CLIP_L, SDXL_CLIP_G), XL_PIPELINES, 1024, is_xl=True,
           configs="sdxl"),
    # The refiner has only the OpenCLIP-bigG encoder and refines images: no txt2img of its own.
    Family("sdxl-refiner", "Stable Diffusion XL refiner", _has(REFINER_CLIP_G),
           {k: v for k, v in XL_PIPELINES.items() if k != "txt2img"}, 1024, is_xl=True, configs="sdxl-refiner"),
)}
# The diffusers pipeline class a folder's model_index.json names -> family (inpainting shows in the UNet).
FOLDER_CLASSES = {cls: fam for fam in ("sd1", "sdxl") for cls in FAMILIES[fam].pipelines.values()}


@dataclass(frozen=True)
class Detected:
    """What the weights say: the family, the UNet's input channels (9 = inpainting), prediction type."""

    family: Family
    in_channels: int
    prediction: str
    prediction_guessed: bool  # True when the weights cannot tell and the family default was taken

    @property
    def inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def native_size(self) -> int:
        # SD 2.x eps checkpoints (512-base, 512-inpainting) are 512 px models; 768-v is 768 px.
        return 512 if self.family.name == "sd2" and self.prediction == "eps" else self.family.native_size


def detect_single_file(shapes: Shapes, source: str = "--model") -> Detected:
    """The family of an original-layout checkpoint from its tensor names and shapes."""
    for family in FAMILIES.values():
        if family.detect(shapes):
            break
    else:
        raise ModelError(f"{source}: not a Stable Diffusion 1.x, 2.x or XL checkpoint (no known text encoder "
                         "keys such as cond_stage_model.* or conditioner.embedders.*)")
    if UNET_CONV_IN not in shapes:
        raise ModelError(f"{source}: the checkpoint has a {family.label} text encoder but no UNet "
                         f"({UNET_CONV_IN} is missing)")
    in_channels = int(shapes[UNET_CONV_IN][1])
    prediction, guessed = guess_prediction(family, in_channels, shapes)
    return Detected(family, in_channels, prediction, guessed)


def guess_prediction(family: Family, in_channels: int, shapes: Shapes) -> tuple[str, bool]:
    """eps or v, and whether that is a guess.

    SD 2.x: 512-base and 768-v have identical tensors. The header-only guess is v for
    ordinary SD 2.x files (2.0-v/2.1-v, the usual ones), settled after loading by the
    WebUI's UNet test (single_file.settle_prediction), and eps for 2.x inpainting
    (512-inpainting is eps). --prediction-type overrides. SDXL: v with the `v_pred` marker.
    """
    if V_PRED_MARKER in shapes:
        return "v", False
    if family.name == "sd2":
        return ("eps" if in_channels == 9 else "v"), True
    return family.prediction, False


def detect_folder(folder: Path) -> Detected:
    """The family of a diffusers folder from model_index.json and the UNet/scheduler configs."""
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    cls = index.get("_class_name", "")
    unet = _read_json(folder / "unet" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction = "v" if scheduler.get("prediction_type") == "v_prediction" else "eps"
    if cls in FOLDER_CLASSES and FOLDER_CLASSES[cls] == "sdxl":
        # The refiner is saved as an SDXL img2img pipeline without the CLIP-L encoder.
        name = "sdxl-refiner" if not (index.get("text_encoder") or [None])[0] else "sdxl"
    elif unet.get("cross_attention_dim") and unet.get("use_linear_projection"):
        name = "sd2"  # OpenCLIP-H era UNets use linear attention projections
    else:
        name = "sd1"
    return Detected(FAMILIES[name], int(unet.get("in_channels", 4)), prediction, False)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def pipeline_class(detected: Detected, mode: str, source: str = "--model") -> str:
    """The diffusers pipeline class that runs `mode` for this model; ModelError when none can."""
    cls = detected.family.pipelines.get(mode)
    if cls is None:
        hint = "; use it as --refiner for an SDXL base model" if detected.family.name == "sdxl-refiner" else ""
        raise ModelError(f"{source}: a {detected.family.label} model cannot run {mode}{hint}")
    return cls
