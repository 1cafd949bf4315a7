"""`sdcli upscale`: run an upscaler on existing images, keeping their metadata (the WebUI's Extras tab).

`plan_upscale` checks everything before any model loads (the upscaler, the size, every input
image and the output folder); `upscale_one(path, upscaler, options, folder)` does one image and
returns its JSON record, so a runner over folders (batch/upscale_run.py) calls it per file, each
input's failure its own. As the WebUI's Extras:
"Scale by" upscales to scale x the size floored to a multiple of 8; "Scale to" (--size) upscales
by the larger ratio and crops the centre to exactly WxH ("Crop to fit"). The input's metadata is
kept (PNG text chunks, including the WebUI "parameters" and sdcli's record; JPEG/WebP EXIF) and the
Extras keys are added in PNG "postprocessing" and "extras" chunks, as the WebUI writes them:
`Postprocess upscale by: 2, Postprocess upscaler: Lanczos`. Output keeps the input's format and
name (`-1`, `-2` ... when taken), written atomically, never over an existing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

MAX_SIDE = 16384
SCALE_RANGE = (1.0, 8.0)
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
ORIENTATION = 0x0112


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale: an upscaler (name or file), and --scale or --size WxH (width/height 0: --scale);
    `crop` false (the WebUI API's upscaling_crop): a size upscales by the larger ratio and is not cropped."""

    upscaler: str = "Lanczos"
    scale: float = 2.0
    width: int = 0
    height: int = 0
    crop: bool = True

    def target(self, width: int, height: int) -> tuple[float, tuple[int, int] | None]:
        """(scale factor to upscale by, crop size or None) for an input of width x height."""
        if self.width or self.height:
            return max(self.width / width, self.height / height), (self.width, self.height) if self.crop else None
        return self.scale, None


def plan_upscale(options: UpscaleOptions, paths: list[Path], library: Any = None,
                 allow_pickle: bool = False) -> Any:
    """Check the upscaler, the size and every input before any work; return the UpscalerRef."""
    from sdcli.io.images import open_image

    if not paths:
        raise UsageError("IMAGE: give at least one image to upscale")
    ref = check_upscaler(options, library, allow_pickle)
    for path in paths:
        check_size(path, open_image(path, "IMAGE"), options)
    return ref


def check_upscaler(options: UpscaleOptions, library: Any = None, allow_pickle: bool = False,
                   names_only: bool = False) -> Any:
    """Check the upscaler and --scale/--size (no input read); return the UpscalerRef. `names_only` (the server):
    a built-in or a name in the models folder's ESRGAN/, never a path."""
    from sdcli.models.upscalers import LATENT_MODES, resolve_upscaler

    ref = resolve_upscaler(options.upscaler, "--upscaler", library, allow_pickle, names_only)
    if ref.kind == "latent":
        raise UsageError(f"--upscaler: {ref.name} works on latents (hires fix only); sdcli upscale takes Lanczos, "
                         f"Nearest or an ESRGAN-family file (latent modes: {', '.join(LATENT_MODES)})")
    if ref.name == "None" and ref.kind == "pil":
        raise UsageError("--upscaler: None does not upscale; choose Lanczos, Nearest or an ESRGAN-family file")
    if options.width or options.height:
        if min(options.width, options.height) < 8 or max(options.width, options.height) > MAX_SIDE:
            raise UsageError(f"--size: {options.width}x{options.height}; each side must be 8 to {MAX_SIDE}")
    elif not SCALE_RANGE[0] < options.scale <= SCALE_RANGE[1]:
        raise UsageError(f"--scale: {options.scale:g} is out of range; use more than {SCALE_RANGE[0]:g} "
                         f"and at most {SCALE_RANGE[1]:g}")
    return ref


def check_size(path: Path, image: Any, options: UpscaleOptions) -> None:
    """UsageError naming `path` if its upscaled size would be out of range."""
    scale, crop = options.target(*image.size)
    size = crop or (int(image.width * scale) // 8 * 8, int(image.height * scale) // 8 * 8)
    if min(size) < 8 or max(size) > MAX_SIDE:
        raise UsageError(f"IMAGE: {path} ({image.width}x{image.height}) would become {size[0]}x{size[1]}; "
                         f"each side must be 8 to {MAX_SIDE}")


def postprocess_params(options: UpscaleOptions, name: str, crop: tuple[int, int] | None) -> dict[str, Any]:
    """The WebUI Extras keys (scripts/postprocessing_upscale.py), in its order."""
    if not (options.width or options.height):
        return {"Postprocess upscale by": f"{options.scale:g}", "Postprocess upscaler": name}
    size = f"{options.width}x{options.height}"
    cropped = {"Postprocess crop to": f"{crop[0]}x{crop[1]}"} if crop else {}
    return {"Postprocess upscale to": size, **cropped, "Postprocess upscaler": name}


def upscale_image(image: Any, upscaler: Any, options: UpscaleOptions) -> tuple[Any, dict[str, Any]]:
    """One RGB image upscaled as the WebUI's Extras does; with its postprocessing keys."""
    from PIL import Image

    scale, crop = options.target(*image.size)
    result = upscaler.upscale(image, scale)
    if crop is not None:  # "Crop to fit": the centre, on black where the upscale falls short
        canvas = Image.new("RGB", crop)
        canvas.paste(result, (crop[0] // 2 - result.width // 2, crop[1] // 2 - result.height // 2))
        result = canvas
    return result, postprocess_params(options, upscaler.ref.name, crop)


def _kept_metadata(path: Path) -> tuple[str, dict[str, str], bytes | None]:
    """The input's format, its PNG text chunks and its EXIF bytes (kept in the output)."""
    from PIL import Image

    with Image.open(path) as im:
        texts = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
        exif = None
        if isinstance(im.info.get("exif"), bytes):
            tags = im.getexif()
            tags.pop(ORIENTATION, None)  # open_image turned the pixels upright already
            exif = tags.tobytes()
        return im.format, texts, exif


def upscale_one(path: Path, upscaler: Any, options: UpscaleOptions, folder: Path, quality: int = 95,
                stem: str | None = None) -> dict[str, Any]:
    """Upscale one image file into `folder` as `stem` (default: the input's; atomic, no clobber); return its
    JSON record. A corrupt input or an out-of-range size is a UsageError naming the file."""
    from PIL.PngImagePlugin import PngInfo

    from sdcli.io.images import open_image
    from sdcli.io.metadata import quote
    from sdcli.io.output import write_atomic

    image = open_image(path, "IMAGE")
    check_size(path, image, options)
    fmt, texts, exif = _kept_metadata(path)
    result, params = upscale_image(image, upscaler, options)
    postprocessing = ", ".join(f"{k}: {quote(v)}" for k, v in params.items())

    def save(tmp: Path) -> None:
        if fmt == "PNG":
            info = PngInfo()
            for key, value in {**texts, "postprocessing": postprocessing, "extras": postprocessing}.items():
                info.add_text(key, value)
            result.save(tmp, format="PNG", pnginfo=info, **({"exif": exif} if exif else {}))
        else:
            result.save(tmp, format=fmt, quality=quality, **({"exif": exif} if exif else {}))

    written = write_atomic(folder, stem or path.stem, SUFFIXES[fmt], save)
    return {"type": "upscale", "path": str(written), "source": str(path), "width": result.width,
            "height": result.height, "upscaler": upscaler.ref.name, "postprocessing": postprocessing}
