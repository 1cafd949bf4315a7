"""The ControlNet flags of txt2img, img2img and inpaint (repeatable: one unit per --controlnet)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli.options import _append

CONTROL = "ControlNet (repeat --controlnet/--control-image for several units)"
PER_UNIT = " Give once for every unit, or once per --controlnet in the same order."

ControlNet = Annotated[list[str] | None, typer.Option(
    "--controlnet", show_default=False, metavar="MODEL", rich_help_panel=CONTROL,
    help="ControlNet: a .safetensors file (control_*.safetensors layout or diffusers'), a diffusers folder, or "
    "a name in the models folder's ControlNet/ (WebUI models/ControlNet). Repeatable (multi-ControlNet).")]
ControlImage = Annotated[list[Path] | None, typer.Option(
    "--control-image", show_default=False, metavar="IMG", rich_help_panel=CONTROL,
    help="Control image of each --controlnet, in the same order: a photo to preprocess, or a ready map "
    "(edges, depth, normal, pose...) with --preprocessor none. One alone (no --controlnet): the control input of "
    "a Flux Control model (Canny/Depth dev, or dev with a BFL control LoRA).")]
Preprocessor = Annotated[list[str] | None, typer.Option(
    "--preprocessor", show_default=False, metavar="NAME", rich_help_panel=CONTROL,
    help="none (the image is the map) [default], canny, lineart (lineart_standard), scribble (scribble_xdog) or "
    "invert. Preprocessors that need model weights (openpose, depth_midas, hed...) are refused." + PER_UNIT)]
ControlWeight = Annotated[list[float] | None, typer.Option(
    "--control-weight", show_default=False, metavar="W", rich_help_panel=CONTROL,
    help="Control weight, 0-2 [default: 1]." + PER_UNIT)]
ControlStart = Annotated[list[float] | None, typer.Option(
    "--control-start", show_default=False, metavar="F", rich_help_panel=CONTROL,
    help="Guidance start: fraction of the steps before which the unit is off, 0-1 [default: 0]." + PER_UNIT)]
ControlEnd = Annotated[list[float] | None, typer.Option(
    "--control-end", show_default=False, metavar="F", rich_help_panel=CONTROL,
    help="Guidance end: fraction of the steps after which the unit is off, 0-1 [default: 1]." + PER_UNIT)]
ControlMode = Annotated[list[str] | None, typer.Option(
    "--control-mode", show_default=False, metavar="MODE", rich_help_panel=CONTROL,
    help="balanced [default], prompt ('My prompt is more important') or controlnet ('ControlNet is more "
    "important')." + PER_UNIT)]
ControlResize = Annotated[list[str] | None, typer.Option(
    "--control-resize", show_default=False, metavar="MODE", rich_help_panel=CONTROL,
    help="How the control image fits the generation size: just (stretch), crop (Crop and Resize) [default] or "
    "fill (Resize and Fill, black borders)." + PER_UNIT)]
ControlRes = Annotated[list[int] | None, typer.Option(
    "--control-res", show_default=False, metavar="PX", rich_help_panel=CONTROL,
    help="Processor resolution: the preprocessor sees the image with this short side, 64-2048 [default: 512]."
    + PER_UNIT)]
ThresholdA = Annotated[list[float] | None, typer.Option(
    "--control-threshold-a", show_default=False, metavar="A", rich_help_panel=CONTROL,
    help="canny: low threshold [100]; scribble: XDoG threshold [32]." + PER_UNIT)]
ThresholdB = Annotated[list[float] | None, typer.Option(
    "--control-threshold-b", show_default=False, metavar="B", rich_help_panel=CONTROL,
    help="canny: high threshold [200]." + PER_UNIT)]
PixelPerfect = Annotated[bool, typer.Option(
    "--control-pixel-perfect", rich_help_panel=CONTROL,
    help="Pixel Perfect: the processor resolution follows the generation size (all units).")]


def _control(
    controlnet: ControlNet = None,
    control_image: ControlImage = None,
    preprocessor: Preprocessor = None,
    control_weight: ControlWeight = None,
    control_start: ControlStart = None,
    control_end: ControlEnd = None,
    control_mode: ControlMode = None,
    control_resize: ControlResize = None,
    control_res: ControlRes = None,
    control_threshold_a: ThresholdA = None,
    control_threshold_b: ThresholdB = None,
    control_pixel_perfect: PixelPerfect = False,
) -> None:
    """Template only: the ControlNet flags."""


def control_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command (decorated by options.shared_options) the ControlNet flags too."""
    return _append(func, (_control,), ())


def control_part(flags: dict[str, Any]) -> dict[str, Any]:
    """The request part of the ControlNet flags: {"controlnets": units} ({} for a command without them)."""
    from sdcli.controlnet.units import units_from_flags

    if "controlnet" not in flags:
        return {}
    images = [str(Path(p).absolute()) for p in flags.get("control_image") or ()]
    return {"controlnets": units_from_flags({**flags, "control_image": images})}
