"""`sdcli edit`: edit images by instruction with a model that takes reference images (Flux.1 Kontext, Flux.2 klein,
Qwen-Image-Edit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli import folders as f
from sdcli.cli import options as o

HELP = """Edit an image by instruction ("make the sky purple") with a model that takes reference images: \
Flux.1 Kontext, Flux.2 klein, Qwen-Image-Edit (and Edit Plus).

The model sees each -i IMAGE (repeat -i for several: Kontext and klein take up to 4, Qwen-Image-Edit 1, Edit Plus \
3) fitted to the size its family wants (Kontext: the trained size nearest the image's aspect ratio; klein: at most \
1024x1024; Qwen: about 1024x1024) and draws a new image from noise, by default at the first image's fitted size \
(Edit Plus: the last's; --width/--height to change it). The infotext records the images as "Reference hashes"; \
replay needs them where they were.

-i may be one folder or quoted glob instead: each image is edited on its own (seed + i), as img2img does.
With --server URL the images are sent to `sdcli serve`, which edits them with its model.

Examples:

  sdcli edit -m ./flux-kontext -i photo.png "make the sky purple"

  sdcli edit -m ./flux2-klein -i person.png -i jacket.png --seed 7 "the person wears the jacket"

  sdcli edit -m ./flux-kontext -i photos/ -o out/purple "make the sky purple"     (every image of a folder)
"""

References = Annotated[list[Path], typer.Option(
    "--image", "-i", help="Reference image (PNG, JPEG or WebP); repeat for several. Or one folder or quoted glob: "
    "one edit each, seed + i, in name order.", rich_help_panel=o.IMG, show_default=False)]


@o.shared_options()
def edit(ctx: typer.Context, image: References, recursive: f.Recursive = False, resume: f.Resume = False,
         **flags: Any) -> None:
    from sdcli.batch.inputs import is_input_set
    from sdcli.errors import UsageError

    if len(image) > 1 and any(is_input_set(i) for i in image):
        raise UsageError("--image: a folder or glob of images is edited one image at a time; give it as the only -i")
    references = tuple(str(i.expanduser().absolute()) for i in image)
    f.run_inputs(ctx, "edit", flags, image[0], recursive=recursive, resume=resume, references=references)
