"""Upscalers, the WebUI's set: one table of names, the models-folder lookup, and running them.

Used by hires fix (execution.hires) and `sdcli upscale` (job.upscale). Three kinds:

- latent: the WebUI's "Latent ..." modes, torch interpolation of the latents (hires fix only);
- pil: "Lanczos" and "Nearest" (Pillow, no weights) and "None" (a plain Lanczos resize, hires only);
- model: an ESRGAN-family file (ESRGAN, Real-ESRGAN, BSRGAN ... any single-image super-resolution
  architecture spandrel detects), given as a path or a name in the models folder's ESRGAN/.

Weight files open through models.safety (safetensors; .pth/.pt only with --allow-pickle, weights-only)
and the state dict goes to spandrel's ModelLoader.load_from_state_dict. spandrel itself imports
torchvision for two architectures sdcli never uses (LaMa and RestoreFormer); where torchvision cannot
be imported (PyPI's torchvision does not load beside a CPU torch wheel of another build), import_spandrel()
puts placeholder modules for exactly those names in sys.modules while spandrel imports and removes them
right after; the placeholders raise if ever called. Models run as the WebUI's ESRGAN upscaler does: BGR
input in [0, 1], outputs clamped and truncated to 8 bits, in 192 px tiles with 8 px overlap blended
linearly (its ESRGAN_tile / ESRGAN_tile_overlap defaults), so large images do not run out of memory.
Imports torch, PIL and spandrel inside functions only.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError, UsageError

# The WebUI's shared.latent_upscale_modes: name -> (torch interpolate mode, antialias).
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# Upscalers without weights: name -> Pillow resampling filter name ("None": resized, never upscaled).
PIL_FILTERS: dict[str, str] = {"Lanczos": "LANCZOS", "Nearest": "NEAREST", "None": "LANCZOS"}
DEFAULT_HIRES_UPSCALER = "Latent"  # the WebUI's latent_upscale_default_mode
TILE, TILE_OVERLAP = 192, 8  # the WebUI's ESRGAN_tile / ESRGAN_tile_overlap defaults
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class UpscalerRef:
    """A resolved upscaler: its infotext name, kind (latent, pil, model) and file (models only)."""

    name: str
    kind: str
    path: str | None = None

    @property
    def latent(self) -> tuple[str, bool] | None:
        return LATENT_MODES.get(self.name) if self.kind == "latent" else None


def builtin_names() -> list[str]:
    return [*LATENT_MODES, *PIL_FILTERS]


def resolve_upscaler(spec: str, flag: str, library: Any = None, allow_pickle: bool = False,
                     names_only: bool = False) -> UpscalerRef:
    """A built-in name (any case), an upscaler file, or a name in the models folder's ESRGAN/.

    Checked before any model loads: files must exist and be safetensors (pickles only with
    --allow-pickle); nothing is read past a safetensors header here. `names_only` (the server):
    a built-in or a name in ESRGAN/, never a path.
    """
    from sdcli.models.folders import is_path_like
    from sdcli.models.safety import PICKLE_SUFFIXES, check_safetensors, refuse_pickle

    builtin = {name.lower(): name for name in builtin_names()}
    if spec.strip().lower() in builtin:
        name = builtin[spec.strip().lower()]
        return UpscalerRef(name, "latent" if name in LATENT_MODES else "pil")
    folder = library is not None and library.folders.get("upscaler") is not None
    if names_only and (is_path_like(spec) or "/" in spec or "\\" in spec):
        raise ModelError(f"{flag}: {spec!r} is a path; only built-in upscalers ({', '.join(builtin_names())})"
                         + (" and names in the models folder's ESRGAN/" if folder else "") + " are accepted here")
    path = Path(spec).expanduser()
    if names_only or not path.is_file():
        if folder and "/" not in spec:
            try:
                path = library.find("upscaler", spec).path
            except UsageError as exc:
                raise type(exc)(str(exc).replace("--upscaler:", f"{flag}:", 1)) from None
        elif names_only:
            raise UsageError(f"{flag}: {spec!r} is not a built-in upscaler ({', '.join(builtin_names())}), and "
                             "there is no models folder to find it in")
        else:
            raise UsageError(f"{flag}: {spec!r} is neither an upscaler ({', '.join(builtin_names())}) nor an "
                             "existing file (ESRGAN-family .safetensors)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        check_safetensors(path, flag)
    elif suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise refuse_pickle(path, flag)
    else:
        raise ModelError(f"{flag}: {path}: unknown upscaler file type {suffix or '(none)'}; use .safetensors")
    return UpscalerRef(path.stem, "model", str(path.resolve()))


def import_spandrel() -> Any:
    """`import spandrel`, with placeholder torchvision modules while it imports if torchvision fails to."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or PyPI's wheel beside another torch build ("operator torchvision::nms ...")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision
        placeholders = _torchvision_placeholders()
    else:
        placeholders = {}
    sys.modules.update(placeholders)
    try:
        import spandrel
    except ImportError as exc:
        raise UsageError(f"ESRGAN-family upscaler files need spandrel ({exc}); install it: pip install "
                         "--no-deps spandrel einops (or pip install 'sdcli[upscale]' with a working "
                         "torchvision)") from None
    finally:
        for name in placeholders:
            sys.modules.pop(name, None)
    return spandrel


def _torchvision_placeholders() -> dict[str, types.ModuleType]:
    """Modules standing in for the torchvision names spandrel imports (LaMa, RestoreFormer)."""
    def unavailable(name: str) -> Any:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(f"torchvision.transforms.functional.{name} is unavailable (torchvision cannot be "
                               "imported here); the LaMa and RestoreFormer architectures need it")
        return call

    root, transforms, functional = (types.ModuleType(n) for n in (
        "torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    functional.rotate = unavailable("rotate")
    functional.normalize = unavailable("normalize")
    functional.InterpolationMode = types.SimpleNamespace(  # an enum's members, read at import time
        NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    root.transforms, transforms.functional = transforms, functional
    return {"torchvision": root, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


def spandrel_model(state: dict[str, Any], path: Any, flag: str, what: str, device: str = "cpu") -> Any:
    """spandrel's model descriptor for the weights `state` of the file `path`, as `what` ("an upscaler", "a
    face-restoration"): a file spandrel does not know or cannot load is one line naming `flag` and the file."""
    spandrel = import_spandrel()
    try:
        return spandrel.ModelLoader(device=device).load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelError(f"{flag}: {path} is not {what} architecture spandrel knows") from None
    except (RuntimeError, KeyError, ValueError, IndexError) as exc:
        raise ModelError(f"{flag}: {path} does not load as {what} model ({str(exc).splitlines()[0]})") from None


def load_model(ref: UpscalerRef, flag: str, allow_pickle: bool = False, device: str = "cpu") -> Any:
    """The spandrel model descriptor of an upscaler file (eval mode, on `device`)."""
    from sdcli.models.safety import load_state_dict

    state = load_state_dict(Path(ref.path), flag=flag, allow_pickle=allow_pickle)
    spandrel = import_spandrel()
    model = spandrel_model(state, ref.path, flag, "an upscaler", device)
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.input_channels != 3 or model.scale < 1:
        raise ModelError(f"{flag}: {ref.path} is a {model.architecture.name} model, not an RGB super-resolution "
                         "upscaler")
    return model.eval()


@dataclass
class Upscaler:
    """A ready upscaler: its reference and, for model files, the loaded spandrel model."""

    ref: UpscalerRef
    model: Any = None

    def step(self, image: Any, scale: float) -> Any:
        """One upscaling step (the WebUI's do_upscale): Pillow by `scale`, a model by its own factor."""
        from PIL import Image

        if self.model is not None:
            return run_tiled(self.model, image.convert("RGB"))
        size = (int(image.width * scale), int(image.height * scale))
        return image.resize(size, resample=getattr(Image.Resampling, PIL_FILTERS[self.ref.name]))

    def upscale(self, image: Any, scale: float) -> Any:
        """The WebUI's Upscaler.upscale: steps until the size (scale x, floored to a multiple of 8) is
        reached (at most 3), then a Lanczos resize to exactly that size if needed."""
        from PIL import Image

        dest = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
        for _ in range(3):
            if image.width >= dest[0] and image.height >= dest[1]:
                break
            before = image.size
            image = self.step(image, scale)
            if image.size == before:
                break
        if image.size != dest:
            image = image.resize(dest, resample=Image.Resampling.LANCZOS)
        return image

    def resize_to(self, image: Any, width: int, height: int) -> Any:
        """The WebUI's resize_image(0, ..., upscaler_name) of hires fix: upscale by the larger ratio
        (only when it grows), then a Lanczos resize to exactly width x height if needed."""
        from PIL import Image

        if self.ref.name != "None":
            scale = max(width / image.width, height / image.height)
            if scale > 1.0:
                image = self.upscale(image, scale)
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
        return image


def ready(ref: UpscalerRef, flag: str, allow_pickle: bool = False, device: str = "cpu") -> Upscaler:
    """An Upscaler for `ref`, loading its model file if it has one."""
    return Upscaler(ref, load_model(ref, flag, allow_pickle, device) if ref.kind == "model" else None)


def _model_patch(model: Any, tile: Any) -> Any:
    """One tile through the model as the WebUI feeds ESRGAN: BGR in [0, 1]; clamped, truncated to 8 bits."""
    import numpy as np
    import torch
    from PIL import Image

    bgr = np.ascontiguousarray(np.asarray(tile, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)) / 255
    param = next(model.model.parameters())
    with torch.no_grad():
        out = model(torch.from_numpy(bgr)[None].to(param.device, param.dtype))
    pixels = (255.0 * out[0].float().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, ::-1]), "RGB")


def run_tiled(model: Any, image: Any, tile: int = TILE, overlap: int = TILE_OVERLAP) -> Any:
    """The model over `image` in tile x tile pieces overlapping by `overlap` px, seams blended linearly
    (the WebUI's split_grid / combine_grid); an image smaller than a tile is padded with black, as there."""
    import numpy as np
    from PIL import Image

    w, h = image.size
    positions = [_starts(w, tile, overlap), _starts(h, tile, overlap)]
    rows = []
    factor = 1
    for y in positions[1]:
        row = []
        for x in positions[0]:
            out = _model_patch(model, image.crop((x, y, x + tile, y + tile)))
            factor = out.width // tile
            row.append((x, out))
        rows.append((y, row))
    t, o = tile * factor, overlap * factor
    ramp = lambda n, axis: Image.fromarray(  # noqa: E731 - the blend mask of an overlap, 0 -> 255
        (np.arange(o, dtype=np.float32) * 255 / o).astype(np.uint8).reshape((1, o) if axis else (o, 1)).repeat(
            n, axis=0 if axis else 1), "L")
    result = Image.new("RGB", (w * factor, h * factor))
    for y, row in rows:
        strip = Image.new("RGB", (w * factor, t))
        for x, out in row:
            px = x * factor
            if x == 0:  # the WebUI blends every other tile, even one starting before the image
                strip.paste(out, (px, 0))
                continue
            strip.paste(out.crop((0, 0, o, t)), (px, 0), mask=ramp(t, 1))
            strip.paste(out.crop((o, 0, t, t)), (px + o, 0))
        py = y * factor
        if y == 0:
            result.paste(strip, (0, py))
            continue
        result.paste(strip.crop((0, 0, strip.width, o)), (0, py), mask=ramp(strip.width, 0))
        result.paste(strip.crop((0, o, strip.width, t)), (0, py + o))
    return result


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one side: evenly spread, the last flush with the end (negative when the side
    is shorter than a tile: the tile then starts before the image, which pads it)."""
    count = math.ceil((size - overlap) / (tile - overlap)) if size > overlap else 1
    step = (size - tile) / (count - 1) if count > 1 else 0
    return [size - tile if int(i * step) + tile >= size else int(i * step) for i in range(count)]
