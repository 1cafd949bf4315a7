"""`sdcli inpaint`: repaint the masked part of an image."""

from __future__ import annotations

from typing import Any

from sdcli.cli import options as o
from sdcli.cli.control_options import control_options

HELP = """Repaint the white part of --mask in --image (the WebUI's inpaint).

Works with ordinary checkpoints (latents blended with the mask at every step) and with dedicated \
inpainting checkpoints (9-channel UNet); sdcli picks the method from the UNet's input channels. \
Outside the blurred mask the output pixels are the input's, unchanged. With --inpaint-area masked \
only a crop around the mask (grown by --padding) is generated, at the full --width/--height, and \
pasted back: the output keeps the input's size.

Examples:

  sdcli inpaint --image room.png --mask sofa-mask.png "a red leather sofa"

  sdcli inpaint -i face.jpg --mask eyes.png --inpaint-area masked --padding 48 --strength 0.6 "blue eyes"

  sdcli inpaint -m ./sd-inpainting -i in.png --mask m.png --invert-mask --masked-content fill \\
      --strength 1 --seed 3 "a stormy sky"
"""


@control_options
@o.shared_options()
def inpaint(
    image: o.Image,
    mask: o.Mask,
    strength: o.Strength = 0.75,
    resize: o.Resize = "just",
    invert_mask: o.InvertMask = False,
    resize_mask: o.ResizeMask = False,
    mask_blur: o.MaskBlur = 4,
    inpaint_area: o.InpaintArea = "whole",
    padding: o.Padding = 32,
    masked_content: o.MaskedContent = "original",
    **flags: Any,
) -> None:
    from sdcli.cli.common import run_command
    from sdcli.core.request import ImageInput, InpaintSettings

    settings = InpaintSettings(str(mask.absolute()), invert_mask, mask_blur, inpaint_area, padding, masked_content,
                               resize_mask)
    run_command("inpaint", flags, init=ImageInput(str(image.absolute()), strength, resize), inpaint=settings)
