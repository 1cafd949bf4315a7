"""THE table of model families: one module per family (sd1, sd2, sdxl with its refiner, flux), one row each.

Pure Python (no torch): detection works on tensor names and shapes, read from a
safetensors header (single files, original WebUI/ldm key layout) or on a diffusers
folder's model_index.json and UNet config, asking each family in DETECTION order.
Adding a family = its module and a row here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from sdcli.errors import ModelError
from sdcli.families.base import Detected, Family, Shapes
from sdcli.families.chroma import CHROMA
from sdcli.families.flux import FLUX_CONTROL, FLUX_DEV, FLUX_FILL, FLUX_SCHNELL
from sdcli.families.flux2 import FLUX2_KLEIN, FLUX2_KLEIN_BASE
from sdcli.families.flux2_dev import FLUX2_DEV
from sdcli.families.kontext import FLUX_KONTEXT
from sdcli.families.qwenimage import QWEN_IMAGE, QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS
from sdcli.families.sd1 import SD1
from sdcli.families.sd2 import SD2
from sdcli.families.sd3 import SD3
from sdcli.families.sdxl import SDXL, SDXL_REFINER
from sdcli.families.zimage import ZIMAGE

FAMILIES: dict[str, Family] = {f.name: f for f in (
    SD1, SD2, SDXL, SDXL_REFINER, FLUX_DEV, FLUX_SCHNELL, FLUX_FILL, FLUX_CONTROL, SD3, ZIMAGE, CHROMA, QWEN_IMAGE,
    FLUX2_KLEIN, FLUX2_KLEIN_BASE, FLUX2_DEV, FLUX_KONTEXT, QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS)}
# Who is asked first: the most specific test first (Qwen-Image and Chroma before Flux, whose img_in.weight they
# have; Qwen-Image-Edit before Qwen-Image and Flux.2 and Kontext before Flux.1, whose folder tests take any
# QwenImage*/Flux* pipeline), SD 1.x (which takes any other folder) last.
DETECTION: tuple[Family, ...] = (SD3, ZIMAGE, QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS, QWEN_IMAGE, CHROMA, FLUX2_KLEIN,
                                 FLUX2_KLEIN_BASE, FLUX2_DEV, FLUX_KONTEXT, FLUX_FILL, FLUX_CONTROL, FLUX_DEV,
                                 FLUX_SCHNELL, SDXL_REFINER, SDXL, SD2, SD1)


# Families whose single files hold another family's tensors key for key (Flux.1 Kontext's are Flux.1 dev's,
# Qwen-Image-Edit's Qwen-Image's), told apart by words in the file's name as people name them (BFL's
# flux1-kontext-dev.safetensors, ComfyUI's qwen_image_edit_2509_fp8_e4m3fn.safetensors; ComfyUI itself needs no
# telling, its workflow's nodes do the editing): (family by tensors, words, the family it is). First match wins;
# names are compared lowercased with "-", "." and spaces as "_".
NAMED_VARIANTS: tuple[tuple[Family, tuple[str, ...], Family], ...] = (
    (QWEN_IMAGE, ("image_edit_2509", "image_edit_2511", "image_edit_plus"), QWEN_IMAGE_EDIT_PLUS),
    (QWEN_IMAGE, ("image_edit",), QWEN_IMAGE_EDIT),
    (FLUX_DEV, ("kontext",), FLUX_KONTEXT),
)


def named_variant(family: Family, name: str) -> Family | None:
    """The family a single file named `name` is, where its tensors say `family` and its name says more
    (NAMED_VARIANTS); None: the tensors' family."""
    words = name.lower().replace("-", "_").replace(".", "_").replace(" ", "_")
    return next((variant for base, marks, variant in NAMED_VARIANTS
                 if base is family and any(mark in words for mark in marks)), None)


def name_hint(family: Family) -> str:
    """How a file of `family`'s tensors says it is one of its NAMED_VARIANTS that edit, for a refusal ("" when none
    does)."""
    hints = [f"{variant.label}: {marks[0]!r}" for base, marks, variant in NAMED_VARIANTS
             if base is family and variant.capabilities.references]
    return f" (a single file's name says which model it is: {', '.join(hints)} in it)" if hints else ""


def detect_single_file(shapes: Shapes, source: str = "--model", name: str = "") -> Detected:
    """The family of an original-layout checkpoint from its tensor names and shapes (and the file's `name`, for
    the families its tensors cannot tell: NAMED_VARIANTS)."""
    family = next((f for f in DETECTION if f.detect(shapes)), None)
    if family is None:
        known = ", ".join(dict.fromkeys(f.label for f in reversed(DETECTION)))
        raise ModelError(f"{source}: not a checkpoint of a model family sdcli knows ({known}): none of their "
                         "tensor names is in it (README: Model families)")
    detected = family.detected_from(shapes, source)
    variant = named_variant(detected.family, name)
    return detected if variant is None else replace(detected, family=variant)


def detect_folder(folder: Path) -> Detected:
    """The family of a diffusers folder from model_index.json and the network's (UNet or transformer)
    and scheduler's configs."""
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    network = _read_json(folder / "unet" / "config.json") or _read_json(folder / "transformer" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction = "v" if scheduler.get("prediction_type") == "v_prediction" else "eps"
    family = next(f for f in DETECTION if f.detect_folder(index, network))
    channels = family.in_channels_of(int(network.get("in_channels", family.latent.channels)))
    return Detected(family, channels, prediction, False)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def pipeline_class(detected: Detected, mode: str, source: str = "--model") -> str:
    """The diffusers pipeline class that runs `mode` for this model; ModelError when none can."""
    family = detected.family
    cls = family.pipelines.get(mode)
    if cls is None:
        refiner = family.capabilities.refines_only
        hint = f"; use it as --refiner for an {family.capabilities.refiner_group} base model" if refiner else ""
        raise ModelError(f"{source}: a {family.label} model cannot run {mode}{hint}")
    return cls


def check_refiner_pair(model: Family, refiner: Family, flag: str = "--refiner") -> None:
    """--refiner needs a model and a refiner of one refiner group (SDXL base or refiner)."""
    group = model.capabilities.refiner_group
    if group is None or group != refiner.capabilities.refiner_group:
        raise ModelError(f"{flag}: both the model and the refiner must be {group or 'SDXL'} models (base or "
                         f"refiner); got {model.label} and {refiner.label}")
