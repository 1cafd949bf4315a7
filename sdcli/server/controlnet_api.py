"""The ControlNet extension's API (Mikubill/sd-webui-controlnet) on sdcli's ControlNet units.

Routes: /controlnet/version, model_list, module_list, settings and detect, with the extension's
shapes; and `alwayson_scripts.controlnet.args` in txt2img/img2img payloads: each unit dict, with
the extension's field names and the value spellings clients send (a resize or control mode as its
label or its number, "None"/"none", the image as base64, {image, mask} or [image, mask], the
legacy `input_image`/`guidance` names), becomes a controlnet.units.ControlUnit. A unit's model is a
name in the server's ControlNet folder, never a path. Out-of-range processor_res/threshold values
fall back to the preprocessor's defaults, as the extension's bound check does; a mask is ignored
(no built-in preprocessor takes one, as the extension ignores it for those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcli.controlnet.units import (
    CONTROL_MODES,
    CONTROL_RESIZE,
    PREPROCESSORS,
    RESIZE_ALIASES,
    ControlUnit,
    canonical_module,
)
from sdcli.errors import SdcliError, UsageError
from sdcli.models.folders import is_path_like

API_VERSION = 2  # what the extension's get_api_version() answers
SCRIPT = "controlnet"  # its always-on script's name (alwayson_scripts key, /sdapi/v1/scripts entry)
NO_MODEL = (None, "", "None", "none")
# The extension's enums, in their numeric order (clients send the number or the label).
RESIZE_ORDER = ("just", "crop", "fill")
MODE_ORDER = ("balanced", "prompt", "controlnet")
SLIDER_NAMES = ("Resolution", "Threshold A", "Threshold B")


@dataclass(frozen=True)
class ApiUnit:
    """One enabled unit of a payload: its ControlUnit settings (model by name; image not yet a file) and its
    control image as sent (base64; None: img2img's input image, as the extension falls back to it)."""

    index: int
    settings: dict[str, Any]
    image: str | None

    @property
    def field(self) -> str:
        return f"alwayson_scripts.{SCRIPT}.args[{self.index}]"


def read_units(scripts: dict[str, Any]) -> list[ApiUnit]:
    """The ControlNet units of a payload's `alwayson_scripts` (its key in any case); [] without any.
    UsageError naming the unit's field for a value the extension would refuse."""
    entry = next((v for k, v in scripts.items() if k.lower() == SCRIPT), None)
    if entry is None:
        return []
    args = entry.get("args") if isinstance(entry, dict) else None
    if not isinstance(args, list):
        raise UsageError(f"alwayson_scripts.{SCRIPT}.args: give a list of unit objects")
    units = []
    for i, data in enumerate(args):
        if not isinstance(data, dict):
            raise UsageError(f"alwayson_scripts.{SCRIPT}.args[{i}]: a unit is an object with the extension's "
                             f"fields (module, model, image, weight, ...), not {type(data).__name__}")
        unit = _read_unit(i, data)
        if unit is not None:
            units.append(unit)
    return units


def _read_unit(i: int, data: dict[str, Any]) -> ApiUnit | None:
    field = f"alwayson_scripts.{SCRIPT}.args[{i}]"
    data = {**data}
    for old, new in (("input_image", "image"), ("guidance", "guidance_end")):  # the extension's legacy names
        if old in data and new not in data:
            data[new] = data.pop(old)
    model = data.get("model", "None")
    if not data.get("enabled", True) or model in NO_MODEL:
        return None
    if not isinstance(model, str) or is_path_like(model):
        raise UsageError(f"{field}.model: {model!r} is not a ControlNet name; name one of /controlnet/model_list "
                         "(the server's ControlNet folder)")
    try:
        module = canonical_module(str(data.get("module") or "none"))
    except UsageError as exc:
        raise UsageError(f"{field}.module: {str(exc).partition(': ')[2]}") from None
    spec = PREPROCESSORS[module]
    settings: dict[str, Any] = {
        "model": model.strip(), "model_by_name": True, "module": module,
        "weight": _number(data, "weight", 1.0, field, 0.0, 2.0),
        "guidance_start": _number(data, "guidance_start", 0.0, field, 0.0, 1.0),
        "guidance_end": _number(data, "guidance_end", 1.0, field, 0.0, 1.0),
        "resize_mode": _choice(data.get("resize_mode", 1), RESIZE_ORDER, CONTROL_RESIZE, f"{field}.resize_mode"),
        "control_mode": _choice(data.get("control_mode", 0), MODE_ORDER, CONTROL_MODES, f"{field}.control_mode"),
        "pixel_perfect": bool(data.get("pixel_perfect", False)),
    }
    if settings["guidance_start"] > settings["guidance_end"]:
        raise UsageError(f"{field}.guidance_start: {settings['guidance_start']:g} is above guidance_end "
                         f"{settings['guidance_end']:g}")
    if settings["guidance_start"] == settings["guidance_end"]:  # no step reaches it: the extension's no-op
        return None
    # Out of the slider's range (-1 included): the preprocessor's default, as the extension's bound check.
    res = _number(data, "processor_res", -1, field)
    settings["processor_res"] = int(res) if spec.resolution and 64 <= res <= 2048 else 512
    for name, slider in (("threshold_a", spec.threshold_a), ("threshold_b", spec.threshold_b)):
        value = _number(data, name, -1, field)
        settings[name] = value if slider is not None and slider[1] <= value <= slider[2] else None
    return ApiUnit(i, settings, _image(data.get("image"), f"{field}.image"))


def _number(data: dict[str, Any], name: str, default: float, field: str, low: float | None = None,
            high: float | None = None) -> float:
    value = data.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{field}.{name}: {value!r} is not a number")
    if low is not None and high is not None and not low <= value <= high:
        raise UsageError(f"{field}.{name}: {value:g} is out of range; use {low:g} to {high:g}")
    return float(value)


def _choice(value: Any, order: tuple[str, ...], labels: dict[str, str], field: str) -> str:
    """An enum as the extension reads it: its number, its label (old labels too) or sdcli's key."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(order):
        return order[value]
    if isinstance(value, str):
        text = RESIZE_ALIASES.get(value.strip(), value.strip())
        by_label = {label.lower(): key for key, label in labels.items()}
        key = by_label.get(text.lower(), text.lower())
        if key in labels:
            return key
    spelled = ", ".join(f"{n} ({labels[k]!r})" for n, k in enumerate(order))
    raise UsageError(f"{field}: {value!r} is not one of {spelled}")


def _image(value: Any, field: str) -> str | None:
    """The control image's base64 from the extension's spellings; a mask beside it is ignored."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("image")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{field}: give the image as base64, {{\"image\": base64, \"mask\": base64}} or "
                         "[image, mask]")
    return value


def uploads(units: list[ApiUnit]) -> dict[str, tuple[str | None, str]]:
    """The units' images for server.payload.Inputs: name -> (base64, field)."""
    return {f"control{u.index}": (u.image, f"{u.field}.image") for u in units if u.image is not None}


def control_units(units: list[ApiUnit], paths: dict[str, str | None],
                  init_image: str | None = None) -> tuple[ControlUnit, ...]:
    """The sdcli units, each image at its uploaded file (no image: img2img's input image, else refused)."""
    out = []
    for unit in units:
        image = paths.get(f"control{unit.index}") or init_image
        if image is None:
            raise UsageError(f"{unit.field}.image: give the unit's control image (base64)")
        out.append(ControlUnit(image=image, **unit.settings))
    return tuple(out)


# sdcli's ControlNet flags in error messages -> the unit fields they come from.
FLAG_FIELDS = {"--controlnet": "model", "--control-image": "image", "--preprocessor": "module",
               "--control-weight": "weight", "--control-start": "guidance_start", "--control-end": "guidance_end",
               "--control-mode": "control_mode", "--control-resize": "resize_mode", "--control-res": "processor_res"}


def field_message(text: str) -> str:
    """An error message with its leading ControlNet flag renamed to the units' field."""
    flag, sep, rest = text.partition(": ")
    if not sep or flag not in FLAG_FIELDS:
        return text
    if rest.startswith(f"alwayson_scripts.{SCRIPT}.args["):  # an uploaded image, already named by its field
        return rest
    return f"alwayson_scripts.{SCRIPT}.args[].{FLAG_FIELDS[flag]}: {rest}"


def add_routes(app: Any, engine: Any, max_pixels: int) -> None:
    """The extension's own routes on `app` (a FastAPI app serving `engine`)."""
    from fastapi import Body

    @app.get("/controlnet/version")
    def version() -> dict[str, Any]:
        return {"version": API_VERSION}

    @app.get("/controlnet/model_list")
    def model_list(update: bool = True) -> dict[str, Any]:
        library = engine.folders.library()
        return {"model_list": [f"{e.stem} [{e.short_hash()}]" for e in library.entries("controlnet")]}

    @app.get("/controlnet/module_list")
    def module_list(alias_names: bool = False) -> dict[str, Any]:
        return {"module_list": list(PREPROCESSORS), "module_detail": {
            name: {"model_free": True, "sliders": _sliders(name)} for name in PREPROCESSORS}}

    @app.get("/controlnet/settings")
    def settings() -> dict[str, Any]:
        return {"control_net_unit_count": 3}  # the extension's default; sdcli takes any number of units

    @app.post("/controlnet/detect")
    def detect(controlnet_module: str = Body("none"), controlnet_input_images: list[str] = Body([]),
               controlnet_processor_res: int = Body(-1), controlnet_threshold_a: float = Body(-1),
               controlnet_threshold_b: float = Body(-1), controlnet_masks: list[str] = Body([]),
               low_vram: bool = Body(False), controlnet_images: list[str] = Body([])) -> dict[str, Any]:
        # controlnet_images: what webuiapi's controlnet_detect sends (the extension's older name)
        return _detect(controlnet_module, controlnet_input_images or controlnet_images, controlnet_processor_res,
                       (controlnet_threshold_a, controlnet_threshold_b), max_pixels)


def _sliders(module: str) -> list[dict[str, Any]]:
    spec = PREPROCESSORS[module]
    rows = [(512.0, 64.0, 2048.0) if spec.resolution else None, spec.threshold_a, spec.threshold_b]
    return [{"name": name, "value": row[0], "min": row[1], "max": row[2]}
            for name, row in zip(SLIDER_NAMES, rows, strict=True) if row is not None]


def _detect(module: str, images: list[str], resolution: int, thresholds: tuple[float, float],
            max_pixels: int) -> dict[str, Any]:
    """POST /controlnet/detect: each image through the preprocessor; the maps as base64 PNGs."""
    import base64
    import io

    from sdcli.controlnet.preprocess import detect, open_control_image
    from sdcli.server.payload import Inputs

    try:
        name = canonical_module(module)
    except UsageError as exc:
        raise UsageError(f"controlnet_module: {str(exc).partition(': ')[2]}") from None
    if not images:
        raise UsageError("controlnet_input_images: no image selected")
    unit = _read_unit(0, {"model": "detect", "module": name, "processor_res": resolution,
                          "threshold_a": thresholds[0], "threshold_b": thresholds[1]})
    assert unit is not None
    control = ControlUnit(image="", **unit.settings)
    out = []
    sent = {f"image{i}": (data, f"controlnet_input_images[{i}]") for i, data in enumerate(images)}
    with Inputs(**sent) as files:
        for i in range(len(images)):
            try:
                image = open_control_image(str(files.paths[f"image{i}"]))
            except SdcliError as exc:
                raise type(exc)(files.explain(exc).replace("--control-image: ", "")) from None
            if image.width * image.height > max_pixels:
                raise UsageError(f"controlnet_input_images[{i}]: {image.width}x{image.height} is over this "
                                 f"server's limit of {max_pixels} pixels")
            buffer = io.BytesIO()
            detect(control, image, control.processor_res).save(buffer, format="PNG")
            out.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"images": out, "info": "Success"}
