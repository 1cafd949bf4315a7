"""Pillow-only image helpers for img2img, inpaint and outpaint.

Images in are untrusted: `open_image` accepts PNG, JPEG and WebP only, refuses
decompression bombs before decoding, and converts every mode to RGB. `prepare`
turns a request into what the pipeline needs (image and mask at generation
size) plus what `PreparedInputs.finish` needs to paste the result back so that
pixels outside the blurred mask are the original ones, as the WebUI does.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.errors import UsageError

if TYPE_CHECKING:
    from PIL.Image import Image

    from sdcli.request.generation import GenerationRequest

FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 8192 * 8192  # the largest size sdcli generates; bigger inputs are refused undecoded
BACKGROUND = (255, 255, 255)  # transparent pixels are flattened onto white, as in the WebUI


# -- Loading ------------------------------------------------------------------------------

def open_image(path: Path, flag: str) -> Image:
    """Open an untrusted PNG/JPEG/WebP file as RGB, naming `flag` and the file in every error."""
    return to_rgb(_decode(path, flag))


def _decode(path: Path, flag: str) -> Image:
    """Decode an untrusted file, upright, in its own mode; size checked before decoding."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"{flag}: {path}: no such file" if not path.exists() else f"{flag}: {path} is not a file")
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit and refuses at twice it; ours is the size we generate.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UsageError(f"{flag}: {path} is {im.width}x{im.height} pixels; the limit is "
                                     f"{MAX_PIXELS} pixels (8192x8192)")
                im.load()
                image = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise UsageError(f"{flag}: {path} is not a PNG, JPEG or WebP image") from None
    except Image.DecompressionBombError as exc:
        raise UsageError(f"{flag}: {path} is too large to open safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{flag}: {path} is corrupt or unreadable ({exc})") from None
    return image


def to_rgb(image: Image) -> Image:
    """Any Pillow mode -> RGB: 16-bit grey scaled to 8 bits, transparency flattened onto white."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = image.point(lambda v: v / 256).convert("L")  # 16-bit -> 8-bit, not clipped
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _has_alpha(image: Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def open_mask(path: Path, size: tuple[int, int], *, invert: bool, fit: bool) -> Image:
    """A mask as "L" (white = repaint). A mask with transparency uses its alpha (opaque = repaint)."""
    from PIL import ImageOps

    image = _decode(path, "--mask")
    alpha = image.convert("RGBA").getchannel("A") if _has_alpha(image) else None
    mask = alpha if alpha is not None and alpha.getextrema() != (255, 255) else to_rgb(image).convert("L")
    if mask.size != size:
        if not fit:
            raise UsageError(f"--mask: {path} is {mask.width}x{mask.height} but the image is "
                             f"{size[0]}x{size[1]}; use a mask of the same size or pass --resize-mask")
        mask = resize(mask, size, "just")
    if invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None:
        raise UsageError(f"--mask: {path} is all black{' once inverted' if invert else ''}: nothing to repaint "
                         "(white = repaint; --invert-mask flips it)")
    return mask


# -- Geometry -----------------------------------------------------------------------------

def round8(value: int) -> int:
    """Nearest multiple of 8 (at least 8)."""
    return max(8, int(value / 8 + 0.5) * 8)


def stretch_edges(image: Image, size: tuple[int, int], at: tuple[int, int]) -> Image:
    """Place `image` at `at` on a canvas of `size`; fill the rest by stretching its border pixels."""
    from PIL import Image

    nearest = Image.Resampling.NEAREST
    (w, h), (width, height), (x0, y0) = image.size, size, at
    x1, y1 = x0 + w, y0 + h
    canvas = Image.new(image.mode, size)
    canvas.paste(image, at)
    if x0 > 0:
        canvas.paste(image.crop((0, 0, 1, h)).resize((x0, h), nearest), (0, y0))
    if x1 < width:
        canvas.paste(image.crop((w - 1, 0, w, h)).resize((width - x1, h), nearest), (x1, y0))
    if y0 > 0:
        canvas.paste(canvas.crop((0, y0, width, y0 + 1)).resize((width, y0), nearest), (0, 0))
    if y1 < height:
        canvas.paste(canvas.crop((0, y1 - 1, width, y1)).resize((width, height - y1), nearest), (0, y1))
    return canvas


def _resize_just(image: Image, size: tuple[int, int], resample: int) -> Image:
    return image.resize(size, resample)


def _resize_crop(image: Image, size: tuple[int, int], resample: int) -> Image:
    from PIL import ImageOps

    return ImageOps.fit(image, size, resample)


def _resize_fill(image: Image, size: tuple[int, int], resample: int) -> Image:
    from PIL import ImageOps

    inner = ImageOps.contain(image, size, resample)
    return stretch_edges(inner, size, ((size[0] - inner.width) // 2, (size[1] - inner.height) // 2))


# How each --resize mode (request.vocabulary.RESIZE_MODES) resizes.
RESIZERS = {"just": _resize_just, "crop": _resize_crop, "fill": _resize_fill}


def resize(image: Image, size: tuple[int, int], mode: str) -> Image:
    """Resize by a --resize mode; a no-op when the size already matches.

    Masks ("L") are resampled bilinearly: Lanczos rings, which would leak a faint
    mask into the black area that must stay untouched.
    """
    from PIL import Image

    if image.size == size:
        return image
    resample = Image.Resampling.BILINEAR if image.mode == "L" else Image.Resampling.LANCZOS
    return RESIZERS[mode](image, size, resample)


def crop_box(mask: Image, padding: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The WebUI's "only masked" region: the mask's bounding box grown by `padding`, then
    widened to the aspect ratio of the generation `size`, all within the image."""
    left, top, right, bottom = mask.getbbox() or (0, 0, *mask.size)
    left, top = max(left - padding, 0), max(top - padding, 0)
    right, bottom = min(right + padding, mask.width), min(bottom + padding, mask.height)
    box_w, box_h = right - left, bottom - top
    want_w, want_h = max(box_w, round(box_h * size[0] / size[1])), max(box_h, round(box_w * size[1] / size[0]))
    want_w, want_h = min(want_w, mask.width), min(want_h, mask.height)
    left = min(max(left - (want_w - box_w) // 2, 0), mask.width - want_w)
    top = min(max(top - (want_h - box_h) // 2, 0), mask.height - want_h)
    return left, top, left + want_w, top + want_h


# -- Filling ------------------------------------------------------------------------------

def fill_masked(image: Image, mask: Image) -> Image:
    """Replace the masked area (white) by colours spread in from around it, coarse to fine.

    Normalised blur (premultiplied alpha, which Pillow's "RGBa" mode gives for free):
    each pass colours every pixel by the average of the kept pixels near it.
    """
    from PIL import Image, ImageFilter, ImageOps

    hard = mask.point(lambda v: 255 if v >= 128 else 0)
    kept = image.convert("RGBA")
    kept.putalpha(ImageOps.invert(hard))
    premultiplied = kept.convert("RGBa")
    filled = Image.new("RGBA", image.size, (*BACKGROUND, 255))
    for radius in (256, 64, 16, 4, 1):
        filled.alpha_composite(premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA"))
    return Image.composite(filled.convert("RGB"), image, hard)


def webui_fill(image: Image, mask: Image) -> Image:
    """Inpaint "fill" as the WebUI's masking.fill: the kept pixels (alpha = inverted soft mask,
    premultiplied) blurred at radii 256 down to 0 and stacked, finest last."""
    from PIL import Image, ImageFilter, ImageOps

    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(layer)
    return filled.convert("RGB")


def fill_noise(image: Image, mask: Image) -> Image:
    """Replace the masked area by uniform RGB noise (a fixed seed: same inputs, same canvas)."""
    from PIL import Image

    noise = Image.frombytes("RGB", image.size, random.Random(0).randbytes(image.width * image.height * 3))
    return Image.composite(noise, image, mask)


# -- Preparing a request ------------------------------------------------------------------

@dataclass
class PreparedInputs:
    """Pipeline inputs at generation size, and how to paste a result back onto the original."""

    image: Image                      # what the pipeline sees
    mask: Image | None = None         # blurred mask at generation size (inpaint/outpaint)
    original: Image | None = None     # what the result is pasted onto
    overlay: Image | None = None      # where the result shows through (blurred mask, original size)
    box: tuple[int, int, int, int] | None = None  # "only masked": where the generated crop goes

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def pipeline_args(self, strength: float, batch: int) -> dict[str, Any]:
        """Keyword arguments for the diffusers img2img / inpainting call of `batch` images.

        One copy of the inputs per image, so that diffusers VAE-encodes each with that
        image's own generator: image i of a batch equals a single run with seed + i.
        """
        args = {"image": [self.image] * batch, "strength": strength}
        if self.mask is not None:
            args.update(mask_image=[self.mask] * batch, width=self.size[0], height=self.size[1])
        return args

    def finish(self, generated: Image) -> Image:
        """Paste a generated image back: through the blurred mask, into the crop box if any."""
        from PIL import Image

        if self.original is None or self.overlay is None:
            return generated
        if self.box is not None:
            left, top, right, bottom = self.box
            placed = self.original.copy()
            placed.paste(generated.resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
            generated = placed
        return Image.composite(generated, self.original, self.overlay)


def target_size(request: GenerationRequest, source: tuple[int, int]) -> tuple[int, int]:
    """--width/--height, else the input's size rounded to a multiple of 8."""
    return request.width or round8(source[0]), request.height or round8(source[1])


def _prepare_img2img(request: GenerationRequest, image: Image) -> PreparedInputs:
    return PreparedInputs(resize(image, target_size(request, image.size), request.init.resize))


def _prepare_inpaint(request: GenerationRequest, image: Image) -> PreparedInputs:
    from PIL import ImageFilter

    init, settings = request.init, request.inpaint
    mask = open_mask(Path(settings.mask), image.size, invert=settings.invert_mask, fit=settings.resize_mask)
    if settings.mask_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(settings.mask_blur))
    size = target_size(request, image.size)
    if settings.area == "masked":
        box = crop_box(mask, settings.padding, size)
        work, work_mask = resize(image.crop(box), size, "just"), resize(mask.crop(box), size, "just")
        return _with_content(PreparedInputs(work, work_mask, image, mask, box), settings.masked_content)
    image, mask = resize(image, size, init.resize), resize(mask, size, init.resize)
    return _with_content(PreparedInputs(image, mask, image, mask), settings.masked_content)


def _with_content(inputs: PreparedInputs, content: str) -> PreparedInputs:
    """--masked-content fill pre-fills the masked pixels as the WebUI; latent modes are applied by generate."""
    if content == "fill" and inputs.mask is not None:
        inputs.image = webui_fill(inputs.image, inputs.mask)
    return inputs


# How each outpaint --fill mode (request.vocabulary.OUTPAINT_FILLS) pre-fills the new area.
FILLERS = {
    "edge": lambda canvas, image, at, mask: stretch_edges(image, canvas, at),
    "noise": lambda canvas, image, at, mask: fill_noise(stretch_edges(image, canvas, at), mask),
    "blur": lambda canvas, image, at, mask: fill_masked(stretch_edges(image, canvas, at), mask),
}


def outpaint_canvas(image: Image, left: int, right: int, up: int, down: int,
                    fill: str) -> tuple[Image, Image, tuple[int, int]]:
    """Grow the canvas by the given pixels (then to a multiple of 8) and pre-fill the new area.

    Rounding adds to right (or left if only left grows) and down (or up). Returns the
    canvas, the hard mask of the new area (white) and where the original sits.
    A side over 8192 px is a UsageError.
    """
    from PIL import Image

    extra_w, extra_h = -(image.width + left + right) % 8, -(image.height + up + down) % 8
    if extra_w:
        left, right = (left + extra_w, right) if left and not right else (left, right + extra_w)
    if extra_h:
        up, down = (up + extra_h, down) if up and not down else (up, down + extra_h)
    size = (image.width + left + right, image.height + up + down)
    if max(size) > 8192:  # checked before anything that size is allocated
        raise UsageError(f"--left/--right/--up/--down: the canvas would be {size[0]}x{size[1]}; "
                         "the limit is 8192 on a side")
    mask = Image.new("L", size, 255)
    mask.paste(0, (left, up, left + image.width, up + image.height))
    return FILLERS[fill](size, image, (left, up), mask), mask, (left, up)


def _prepare_outpaint(request: GenerationRequest, image: Image) -> PreparedInputs:
    from PIL import ImageChops, ImageFilter

    settings = request.outpaint
    canvas, hard, _at = outpaint_canvas(image, *settings.pixels, settings.fill)
    mask = hard.filter(ImageFilter.GaussianBlur(request.inpaint.mask_blur)) if request.inpaint.mask_blur else hard
    # The blur may only soften the seam on the new side: the original pixels stay exact.
    overlay = ImageChops.multiply(mask, hard)
    return _with_content(PreparedInputs(canvas, mask, canvas, overlay), request.inpaint.masked_content)


PREPARERS = {"img2img": _prepare_img2img, "inpaint": _prepare_inpaint, "outpaint": _prepare_outpaint}


def prepare(request: GenerationRequest) -> PreparedInputs | None:
    """Load and check the request's input files; None for txt2img. Raises UsageError naming the file."""
    if request.init is None:
        return None
    image = open_image(Path(request.init.image), "--image")
    return PREPARERS[request.mode](request, image)
