"""The choice tables of the WebUI settings: each value sdcli accepts, with the WebUI's label or code.

Declared once here and imported by everything that checks, writes, reads or runs them
(validation, the infotext, prompt files, the server, the noise sources, the prompt
encoder, the image helpers, the model loader). Pure: no torch, no PIL.
"""

from __future__ import annotations

from sdcli.request.storage import AUTOMATIC, LORA_SUFFIX, QUANTIZE, STORAGES

# --rng value -> the WebUI's "Random number generator source" label (infotext key RNG). "comfy" is sdcli's:
# ComfyUI's noise (one CPU generator for the whole batch latent), used to replay ComfyUI images.
RNG_LABELS = {"cpu": "CPU", "gpu": "GPU", "nv": "NV", "comfy": "Comfy"}
RNG_SOURCES = tuple(RNG_LABELS)

# --emphasis value -> the WebUI's "Emphasis mode" label (infotext key Emphasis).
# "comfy" is sdcli's: ComfyUI's weighting (conditioning.encoding), used to replay ComfyUI images.
EMPHASIS_LABELS = {"original": "Original", "no norm": "No norm", "none": "None", "comfy": "Comfy"}
EMPHASES = tuple(EMPHASIS_LABELS)

# --model-sampling value -> (its label, the timestep multiplier, the default shift): ComfyUI's ModelSampling nodes
# for flow models (comfy_extras/nodes_model_advanced.py), each replacing the model's sigmas by 1000 discrete flow
# sigmas shifted by --shift (ModelSamplingDiscreteFlow), the network's timestep sigma x the multiplier.
MODEL_SAMPLINGS = {"auraflow": ("AuraFlow", 1.0, 1.73), "sd3": ("SD3", 1000.0, 3.0)}

# --restore-faces value -> the WebUI's face restorer name (infotext key Face restoration; models.faces runs them);
# "none" (a prompt file's restore_faces: false) restores nothing. Prompt files' true/false map onto them.
FACE_RESTORER_LABELS = {"gfpgan": "GFPGAN", "codeformer": "CodeFormer", "none": "None"}
FACE_RESTORER_CODES = {True: "gfpgan", False: "none", "true": "gfpgan", "false": "none"}

# --prediction-type value -> the diffusers scheduler's prediction_type.
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction"}

# --resize modes (the WebUI's "Just resize", "Crop and resize", "Resize and fill") and the WebUI's
# numeric resize_mode codes (3, latent upscale, has no sdcli equivalent).
RESIZE_MODES = ("just", "crop", "fill")
RESIZE_CODES = {0: "just", 1: "crop", 2: "fill"}

# --fill modes of outpaint: how the new area is pre-filled before inpainting it (sdcli's own).
OUTPAINT_FILLS = ("edge", "noise", "blur")
DIRECTIONS = ("left", "right", "up", "down")  # outpaint's sides, in the order of OutpaintSettings.pixels

# --inpaint-area value -> the WebUI's infotext label; prompt files also take the WebUI's
# inpaint_full_res codes (0/1, false/true).
INPAINT_AREAS = {"whole": "Whole picture", "masked": "Only masked"}
INPAINT_AREA_CODES = {0: "whole", 1: "masked", "false": "whole", "true": "masked"}  # True == 1

# --masked-content value -> the WebUI's infotext label, and its numeric inpainting_fill codes.
MASKED_CONTENTS = {"original": "original", "fill": "fill", "latent-noise": "latent noise",
                   "latent-nothing": "latent nothing"}
MASKED_CONTENT_CODES = {0: "fill", 1: "original", 2: "latent-noise", 3: "latent-nothing"}


def choice_key(value: str) -> str:
    """--rng / --emphasis spelling -> key: case, '-' and '_' do not matter ("No norm" = no-norm)."""
    return " ".join(value.lower().replace("-", " ").replace("_", " ").split())

# --low-bits value -> its "Diffusion in Low Bits" label (the storage table, request.storage: Forge's labels and
# sdcli's for int8 and torchao fp8), each also with " (fp16 LoRA)": LoRAs applied in fp16 on the fly. Forge writes
# the infotext key only when it is not "Automatic".
LOW_BITS_LABELS = {label.lower(): label for base in (AUTOMATIC, *(s.label for s in STORAGES))
                   for label in (base, base + LORA_SUFFIX)}
LOW_BITS = tuple(LOW_BITS_LABELS)


def low_bits_label(value: str) -> str:
    """A value given to --low-bits (or its prompt-file key) with a --quantize name as its row's label (nf4: bnb-nf4),
    others as given: refusals tell the two flags apart by the spelling (job.plan.storage_flag)."""
    row = QUANTIZE.get(value.strip().lower())
    return value if row is None else row.label


def low_bits_key(value: str) -> str:
    """--low-bits spelling -> key: case and spacing do not matter ("BNB-NF4 (FP16 LoRA)" = "bnb-nf4 (fp16 lora)");
    a --quantize name is its row's label ("nf4" = "bnb-nf4")."""
    key = " ".join(value.lower().replace("_", "-").replace("(", " (").split())
    row = QUANTIZE.get(key)
    return row.label.lower() if row is not None else key


# --reference-scale "METHOD MEGAPIXELS STEPS": ComfyUI's ImageScaleToTotalPixels before an edit reference's VAEEncode
# (comfy_extras/nodes_post_processing.py): its upscale methods (comfy.utils.common_upscale) and its ranges.
REFERENCE_SCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


def parse_reference_scale(text: str) -> tuple[str, float, int]:
    """--reference-scale's (method, megapixels, resolution steps); ValueError saying what is valid."""
    parts = str(text).split()
    try:
        method, megapixels, steps = parts[0].lower(), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise ValueError(f"{text!r} is not METHOD MEGAPIXELS STEPS (ImageScaleToTotalPixels' widgets, as "
                         "'nearest-exact 1 1')") from None
    if (len(parts) != 3 or method not in REFERENCE_SCALE_METHODS or not 0.01 <= megapixels <= 16
            or not 1 <= steps <= 256):
        raise ValueError(f"{text!r}: METHOD one of {', '.join(REFERENCE_SCALE_METHODS)}, MEGAPIXELS 0.01-16, "
                         "STEPS 1-256")
    return method, megapixels, steps
