"""`sdcli inpaint`: repaint the masked part of an image."""

from __future__ import annotations

from typing import Any

import typer

from sdcli.cli import folders as f
from sdcli.cli import options as o
from sdcli.cli.control_options import control_options
from sdcli.cli.style_options import style_options

HELP = """Repaint the white part of --mask in --image (the WebUI's inpaint).

Works with ordinary checkpoints (latents blended with the mask at every step) and with dedicated \
inpainting checkpoints (9-channel UNet); sdcli picks the method from the UNet's input channels. \
Outside the blurred mask the output pixels are the input's, unchanged. With --inpaint-area masked \
only a crop around the mask (grown by --padding) is generated, at the full --width/--height, and \
pasted back: the output keeps the input's size.

--image may be a folder or a quoted glob (see `sdcli img2img --help`); --mask is then one mask file for \
every input, or a folder/glob of masks paired with the inputs by name (photos/cat.jpg with masks/cat.png). \
An input without a mask is an error (exit 2) before anything runs; masks that match no input are noted \
and not used.

Examples:

  sdcli inpaint --image room.png --mask sofa-mask.png "a red leather sofa"

  sdcli inpaint -i face.jpg --mask eyes.png --inpaint-area masked --padding 48 --strength 0.6 "blue eyes"

  sdcli inpaint -m ./sd-inpainting -i in.png --mask m.png --invert-mask --masked-content fill \\
      --strength 1 --seed 3 "a stormy sky"

  sdcli inpaint -i photos/ --mask masks/ --seed 1 "a red sofa"     (each input with the mask of the same name)
"""


@control_options
@style_options
@o.shared_options(exclude=("comfy_edit", "reference_scale"))
def inpaint(
    ctx: typer.Context,
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
    recursive: f.Recursive = False,
    resume: f.Resume = False,
    png_info: f.PngInfo = False,
    **flags: Any,
) -> None:
    from sdcli.request.generation import ImageInput, InpaintSettings

    settings = InpaintSettings(str(mask.absolute()), invert_mask, mask_blur, inpaint_area, padding, masked_content,
                               resize_mask)
    f.run_inputs(ctx, "inpaint", flags, image, mask=mask, recursive=recursive, resume=resume, png_info=png_info,
                 init=ImageInput(str(image.absolute()), strength, resize), inpaint=settings)
