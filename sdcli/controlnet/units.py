"""ControlNet units: what a user asks for, checked and written the way the WebUI's extension does. No torch.

A unit is one ControlNet model with its control image, preprocessor ("module" in
the extension), weight, guidance range, control mode and resize mode. The
infotext records each as Mikubill/sd-webui-controlnet does: `ControlNet 0: "Module:
canny, Model: name [hash], Weight: 1.0, Resize Mode: Crop and Resize, ..."`, and
parse_unit() reads that back for replay.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sdcli.errors import UsageError

# --control-mode value -> the extension's ControlMode label.
CONTROL_MODES = {"balanced": "Balanced", "prompt": "My prompt is more important",
                 "controlnet": "ControlNet is more important"}
# --control-resize value -> the extension's ResizeMode label (its default: Crop and Resize).
CONTROL_RESIZE = {"just": "Just Resize", "crop": "Crop and Resize", "fill": "Resize and Fill"}
# Old labels the extension still reads.
RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                  "Scale to Fit (Inner Fit)": "Crop and Resize", "Envelope (Outer Fit)": "Resize and Fill"}


@dataclass(frozen=True)
class Preprocessor:
    """A built-in preprocessor: the extension's slider defaults and ranges (None: it has no such slider)."""

    resolution: bool = True  # has a Processor Res slider
    threshold_a: tuple[float, float, float] | None = None  # (default, low, high)
    threshold_b: tuple[float, float, float] | None = None


# Preprocessors that need no model weights (sdcli.controlnet.preprocess implements each one).
PREPROCESSORS: dict[str, Preprocessor] = {
    "none": Preprocessor(resolution=False),
    "canny": Preprocessor(threshold_a=(100, 1, 255), threshold_b=(200, 1, 255)),
    "lineart_standard": Preprocessor(),
    "scribble_xdog": Preprocessor(threshold_a=(32, 1, 64)),
    "invert": Preprocessor(),
}
# Friendlier spellings, and the extension's UI labels.
PREPROCESSOR_ALIASES = {
    "lineart": "lineart_standard", "scribble": "scribble_xdog", "edges": "canny",
    "lineart_standard (from white bg & black line)": "lineart_standard",
    "invert (from white bg & black line)": "invert",
    # A ready map (depth, normal, pose, ...) is fed as it is.
    "depth": "none", "normal": "none", "pose": "none", "openpose_map": "none",
}
# Preprocessors of the extension that run a network: the annotator weights sdcli does not ship.
NEEDS_WEIGHTS = {
    "openpose": "the OpenPose body model (body_pose_model.pth)",
    "openpose_full": "the OpenPose body, hand and face models", "openpose_face": "the OpenPose face model",
    "openpose_hand": "the OpenPose hand model", "dw_openpose_full": "the DWPose ONNX models",
    "depth_midas": "the MiDaS depth model (dpt_hybrid-midas-501f0c75.pt)", "depth_zoe": "the ZoeDepth model",
    "depth_leres": "the LeReS depth model", "depth_leres++": "the LeReS depth model",
    "depth_anything": "the Depth Anything model", "normal_bae": "the NormalBAE model (scannet.pt)",
    "normal_midas": "the MiDaS depth model", "hed": "the HED edge model (ControlNetHED.pth)",
    "softedge_hed": "the HED edge model", "softedge_pidinet": "the PiDiNet model (table5_pidinet.pth)",
    "scribble_hed": "the HED edge model", "scribble_pidinet": "the PiDiNet model",
    "lineart_realistic": "the lineart model (sk_model.pth)", "lineart_coarse": "the lineart model (sk_model2.pth)",
    "lineart_anime": "the anime lineart model (netG.pth)", "mlsd": "the M-LSD line model",
    "seg_ofade20k": "the OneFormer segmentation model", "seg_ufade20k": "the UniFormer segmentation model",
    "mediapipe_face": "the MediaPipe face model", "ip-adapter_clip_sd15": "the CLIP vision model",
}


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet unit. `model` is a path or a name in the ControlNet folder ("": none, the control image
    of a control model such as Flux Control, which takes it as an input); `image` a path.

    threshold_a/b None = the preprocessor's default; processor_res is ignored with pixel_perfect.
    """

    model: str
    image: str
    module: str = "none"
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "balanced"
    resize_mode: str = "crop"
    processor_res: int = 512
    threshold_a: float | None = None
    threshold_b: float | None = None
    pixel_perfect: bool = False
    model_by_name: bool = False  # from a WebUI infotext: `model` is a name in the ControlNet folder, never a path

    @property
    def preprocessor(self) -> Preprocessor:
        return PREPROCESSORS[self.module]

    def thresholds(self) -> tuple[float | None, float | None]:
        """Threshold A and B as used (defaults filled in; None where the preprocessor has no such slider)."""
        spec = self.preprocessor
        a = None if spec.threshold_a is None else (spec.threshold_a[0] if self.threshold_a is None
                                                   else self.threshold_a)
        b = None if spec.threshold_b is None else (spec.threshold_b[0] if self.threshold_b is None
                                                   else self.threshold_b)
        return a, b


def canonical_module(name: str) -> str:
    """--preprocessor value -> the built-in preprocessor's name; UsageError for weights or unknown names."""
    key = name.strip()
    key = PREPROCESSOR_ALIASES.get(key, PREPROCESSOR_ALIASES.get(key.lower(), key.lower()))
    if key in PREPROCESSORS:
        return key
    if key in NEEDS_WEIGHTS:
        raise UsageError(f"--preprocessor: {name} needs {NEEDS_WEIGHTS[key]}, which sdcli does not ship; make the "
                         "map with another tool and pass it with --preprocessor none")
    raise UsageError(f"--preprocessor: unknown preprocessor {name!r}; built in: {', '.join(PREPROCESSORS)} "
                     "(also lineart, scribble; depth/normal/pose maps: none)")


def _range(flag: str, value: float, low: float, high: float, unit: int, several: bool) -> None:
    if not low <= value <= high:
        where = f" (unit {unit})" if several else ""
        raise UsageError(f"{flag}: {value:g}{where} is out of range; use {low:g} to {high:g}")


def validate_units(units: tuple[ControlUnit, ...]) -> None:
    """Check every unit's settings (names the flag, and the unit when there are several). Files: check_files."""
    several = len(units) > 1
    for i, unit in enumerate(units):
        if (canonical := canonical_module(unit.module)) != unit.module:
            raise UsageError(f"--preprocessor: {unit.module!r} is spelled {canonical!r} in a request")
        _range("--control-weight", unit.weight, 0, 2, i, several)
        _range("--control-start", unit.guidance_start, 0, 1, i, several)
        _range("--control-end", unit.guidance_end, 0, 1, i, several)
        if unit.guidance_start >= unit.guidance_end:
            raise UsageError(f"--control-start: {unit.guidance_start:g} is not below --control-end "
                             f"{unit.guidance_end:g}" + (f" (unit {i})" if several else ""))
        if unit.control_mode not in CONTROL_MODES:
            raise UsageError(f"--control-mode: unknown value {unit.control_mode!r}; choose from "
                             f"{', '.join(CONTROL_MODES)}")
        if unit.resize_mode not in CONTROL_RESIZE:
            raise UsageError(f"--control-resize: unknown value {unit.resize_mode!r}; choose from "
                             f"{', '.join(CONTROL_RESIZE)}")
        _range("--control-res", unit.processor_res, 64, 2048, i, several)
        spec = unit.preprocessor
        for flag, value, slider in (("--control-threshold-a", unit.threshold_a, spec.threshold_a),
                                    ("--control-threshold-b", unit.threshold_b, spec.threshold_b)):
            if value is None:
                continue
            if slider is None:
                raise UsageError(f"{flag}: the {unit.module} preprocessor has no such threshold")
            _range(flag, value, slider[1], slider[2], i, several)


# --flag -> ControlUnit field, for the per-unit flags (given once for all units or once per unit).
UNIT_FLAGS = {"preprocessor": "module", "control_weight": "weight", "control_start": "guidance_start",
              "control_end": "guidance_end", "control_mode": "control_mode", "control_resize": "resize_mode",
              "control_res": "processor_res", "control_threshold_a": "threshold_a",
              "control_threshold_b": "threshold_b"}


def units_from_flags(flags: dict[str, Any]) -> tuple[ControlUnit, ...]:
    """ControlUnits from the repeatable --controlnet/--control-image flags and the per-unit flags."""
    models, images = list(flags.get("controlnet") or ()), list(flags.get("control_image") or ())
    if not models and len(images) == 1:  # the model's own control input (Flux Control, a BFL control LoRA)
        models = [""]
    if not models:
        given = [name for name in ("control_image", *UNIT_FLAGS) if flags.get(name)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')}: needs --controlnet MODEL (or one --control-image "
                             "for a Flux Control model)")
        return ()
    if len(images) != len(models):
        raise UsageError(f"--control-image: {len(images)} given for {len(models)} --controlnet; give one "
                         "--control-image per --controlnet, in the same order")
    per_unit: list[dict[str, Any]] = [{} for _ in models]
    for flag, field in UNIT_FLAGS.items():
        values = list(flags.get(flag) or ())
        if not values:
            continue
        if len(values) not in (1, len(models)):
            raise UsageError(f"--{flag.replace('_', '-')}: {len(values)} values for {len(models)} --controlnet; "
                             "give one for all units or one per unit")
        for i in range(len(models)):
            per_unit[i][field] = values[0] if len(values) == 1 else values[i]
    for values in per_unit:
        if "module" in values:
            values["module"] = canonical_module(values["module"])
        if "control_mode" in values:
            values["control_mode"] = values["control_mode"].lower()
        if "resize_mode" in values:
            values["resize_mode"] = values["resize_mode"].lower()
    units = tuple(ControlUnit(model=m, image=i, pixel_perfect=bool(flags.get("control_pixel_perfect")), **v)
                  for m, i, v in zip(models, images, per_unit, strict=True))
    validate_units(units)
    return units


def unit_from_dict(data: dict[str, Any]) -> ControlUnit:
    """The inverse of dataclasses.asdict(unit), ignoring unknown keys."""
    known = {f.name for f in fields(ControlUnit)}
    return ControlUnit(**{k: v for k, v in data.items() if k in known})


# -- Infotext, as the extension writes and reads it ---------------------------------------


def unit_infotext(unit: ControlUnit, model_title: str, processor_res: int) -> str:
    """One unit's value of the `ControlNet N` key: the extension's fields, its -1 sliders left out."""
    a, b = unit.thresholds()
    values: list[tuple[str, Any]] = [
        ("Module", unit.module), ("Model", model_title), ("Weight", float(unit.weight)),
        ("Resize Mode", CONTROL_RESIZE[unit.resize_mode]), ("Low Vram", False),
        ("Processor Res", processor_res if unit.preprocessor.resolution else None),
        ("Threshold A", None if a is None else float(a)), ("Threshold B", None if b is None else float(b)),
        ("Guidance Start", float(unit.guidance_start)), ("Guidance End", float(unit.guidance_end)),
        ("Pixel Perfect", unit.pixel_perfect), ("Control Mode", CONTROL_MODES[unit.control_mode]),
        ("Hr Option", "Both"), ("Save Detected Map", True),
    ]
    return ", ".join(f"{key}: {value}" for key, value in values if value is not None)


def _number(text: str) -> float:
    return float(text)


def parse_unit(text: str, image: str = "") -> ControlUnit:
    """A `ControlNet N` infotext value -> a unit (model: the title, `name [hash]`, which is looked up in the
    ControlNet folder only, never as a path). ValueError if bad."""
    items: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition(": ")
        if not sep:
            raise ValueError(f"not a 'Key: value' pair: {part.strip()!r}")
        items[key] = value.strip()
    labels = {v: k for k, v in CONTROL_MODES.items()}
    resizes = {v: k for k, v in CONTROL_RESIZE.items()}
    resize = RESIZE_ALIASES.get(items.get("Resize Mode", "Crop and Resize"), items.get("Resize Mode",
                                                                                         "Crop and Resize"))
    mode = items.get("Control Mode", "Balanced")
    if resize not in resizes:
        raise ValueError(f"unknown Resize Mode {resize!r}")
    if mode not in labels:
        raise ValueError(f"unknown Control Mode {mode!r}")
    model = items.get("Model", "")
    if not model or model == "None":
        raise ValueError("no Model")
    module = canonical_module(items.get("Module", "none"))
    spec = PREPROCESSORS[module]
    res = int(float(items["Processor Res"])) if "Processor Res" in items and spec.resolution else 512
    a = _number(items["Threshold A"]) if "Threshold A" in items and spec.threshold_a else None
    b = _number(items["Threshold B"]) if "Threshold B" in items and spec.threshold_b else None
    return ControlUnit(model=model, image=image, module=module, weight=_number(items.get("Weight", "1")),
                       guidance_start=_number(items.get("Guidance Start", "0")),
                       guidance_end=_number(items.get("Guidance End", "1")), control_mode=labels[mode],
                       resize_mode=resizes[resize], processor_res=max(res, 64), threshold_a=a, threshold_b=b,
                       pixel_perfect=items.get("Pixel Perfect", "False") == "True", model_by_name=True)

