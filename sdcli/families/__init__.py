"""THE table of model families: how each is recognised, which pipelines serve it, its defaults.

Pure Python (no torch): detection works on tensor names and shapes, read from a
safetensors header (single files, original WebUI/ldm key layout) or on a diffusers
folder's model_index.json and UNet config. One module per family (sd1, sd2, sdxl);
adding a family = its module and a row of FAMILIES.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdcli.errors import ModelError
from sdcli.families.base import UNET_CONV_IN, V_PRED_MARKER, Detected, Family, Shapes
from sdcli.families.sd1 import SD1
from sdcli.families.sd2 import SD2
from sdcli.families.sdxl import SDXL, SDXL_REFINER

FAMILIES: dict[str, Family] = {f.name: f for f in (SD1, SD2, SDXL, SDXL_REFINER)}
# The diffusers pipeline class a folder's model_index.json names -> family (inpainting shows in the UNet).
FOLDER_CLASSES = {cls: fam for fam in ("sd1", "sdxl") for cls in FAMILIES[fam].pipelines.values()}


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
