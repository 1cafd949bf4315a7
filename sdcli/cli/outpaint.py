"""`sdcli outpaint`: grow the canvas and paint the new area."""

from __future__ import annotations

from typing import Any

from sdcli.cli import options as o
from sdcli.cli.style_options import style_options

HELP = """Extend an image beyond its borders (the WebUI's outpainting).

The canvas grows by the given pixels per side (then up to a multiple of 8), the new area is \
pre-filled (--fill) and then inpainted; the original pixels come back unchanged. The output size is \
the grown canvas (no --width/--height).

Examples:

  sdcli outpaint --image beach.png --left 128 --right 128 "a wide sandy beach"

  sdcli outpaint -i portrait.jpg --expand 64 --direction up,down --fill blur --seed 5 "a cathedral"

  sdcli outpaint -i in.png --expand 96 --strength 0.9 --mask-blur 16 --json "a forest" | jq .path
"""


@style_options
@o.shared_options(exclude=("width", "height", "comfy_edit", "reference_scale"))
def outpaint(
    image: o.Image,
    left: o.Left = 0,
    right: o.Right = 0,
    up: o.Up = 0,
    down: o.Down = 0,
    expand: o.Expand = 0,
    direction: o.Direction = None,
    fill: o.Fill = "edge",
    strength: o.Strength = 0.75,
    mask_blur: o.MaskBlur = 8,
    masked_content: o.MaskedContent = "original",
    **flags: Any,
) -> None:
    from sdcli.cli.common import run_command
    from sdcli.errors import UsageError
    from sdcli.request.generation import ImageInput, InpaintSettings, OutpaintSettings
    from sdcli.request.vocabulary import DIRECTIONS

    sides = {"left": left, "right": right, "up": up, "down": down}
    chosen = [d.strip() for item in direction or [] for d in item.split(",") if d.strip()]
    if chosen and not expand:
        raise UsageError("--direction: needs --expand PX (the pixels to add on those sides)")
    for side in chosen:
        if side not in DIRECTIONS:
            raise UsageError(f"--direction: unknown side {side!r}; choose from {', '.join(DIRECTIONS)}")
    if expand:
        sides.update({side: sides[side] or expand for side in chosen or DIRECTIONS})
    run_command("outpaint", flags, init=ImageInput(str(image.absolute()), strength),
                inpaint=InpaintSettings(mask_blur=mask_blur, masked_content=masked_content),
                outpaint=OutpaintSettings(**sides, fill=fill))
