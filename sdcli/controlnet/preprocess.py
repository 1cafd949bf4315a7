"""ControlNet control images: the built-in preprocessors and the resize to the generation size.

As the WebUI extension: a preprocessor runs on the control image with its short
side scaled to the Processor Res (or, with Pixel Perfect, the resolution that
matches the generation size), then the map is fitted to the generation size by
the resize mode (Just Resize, Crop and Resize, Resize and Fill) and fed to the
ControlNet as RGB in [0, 1]. The extension runs OpenCV; sdcli ports the few
weight-free detectors to numpy (no OpenCV dependency), with OpenCV's Gaussian
kernels and border rules, so maps match it closely but not bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdcli.controlnet.units import ControlUnit


def open_control_image(path: str) -> Any:
    """The control image as RGB, read by the rules for untrusted input images (io.images.open_image)."""
    from sdcli.io.images import open_image

    return open_image(Path(path), "--control-image")


def processor_resolution(unit: ControlUnit, image_size: tuple[int, int], target: tuple[int, int]) -> int:
    """The Processor Res the unit runs at: its own, or with Pixel Perfect the extension's estimate."""
    if not unit.pixel_perfect:
        return unit.processor_res
    (w, h), (tw, th) = image_size, target
    k = (min if unit.resize_mode == "fill" else max)(th / h, tw / w)
    return int(round(k * min(w, h)))


# -- numpy ports of the OpenCV operations the extension's detectors use ----------------------


def _gaussian_kernel(sigma: float) -> Any:
    """cv2.getGaussianKernel for float images: size round(sigma * 8 + 1) | 1."""
    import numpy as np

    size = int(round(sigma * 8 + 1)) | 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x ** 2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(image: Any, sigma: float) -> Any:
    """cv2.GaussianBlur(image, (0, 0), sigma) on a float HxW[xC] array (BORDER_REFLECT_101)."""
    import numpy as np

    kernel = _gaussian_kernel(sigma)
    r = len(kernel) // 2
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect")
        length = out.shape[axis]
        out = sum(kernel[i] * np.take(padded, range(i, i + length), axis=axis) for i in range(len(kernel)))
    return out.astype(np.float32)


def canny(image: Any, low: float, high: float) -> Any:
    """cv2.Canny(image, low, high) (3x3 Sobel, L1 magnitude, channel of largest gradient, hysteresis)."""
    import numpy as np

    src = image.astype(np.float32)
    if src.ndim == 2:
        src = src[..., None]
    p = np.pad(src, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag_c = np.abs(gx) + np.abs(gy)
    best = np.argmax(mag_c, axis=2)[..., None]
    gx, gy = np.take_along_axis(gx, best, 2)[..., 0], np.take_along_axis(gy, best, 2)[..., 0]
    mag = np.take_along_axis(mag_c, best, 2)[..., 0]
    # Non-maximum suppression along the gradient direction (0, 45, 90, 135 degrees).
    m = np.pad(mag, 1)
    h, w = mag.shape
    ax, ay = np.abs(gx), np.abs(gy)
    tan22, tan67 = math.tan(math.radians(22.5)), math.tan(math.radians(67.5))
    horizontal = ay <= ax * tan22
    vertical = ay > ax * tan67
    same_sign = (gx * gy) > 0

    def at(dy: int, dx: int) -> Any:
        return m[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    n1 = np.where(horizontal, at(0, -1), np.where(vertical, at(-1, 0), np.where(same_sign, at(-1, -1), at(-1, 1))))
    n2 = np.where(horizontal, at(0, 1), np.where(vertical, at(1, 0), np.where(same_sign, at(1, 1), at(1, -1))))
    # OpenCV keeps a pixel that beats one neighbour strictly and ties the other (the first direction).
    peak = (mag > low) & (mag > n1) & (mag >= n2)
    strong = peak & (mag > high)
    weak = peak
    edges = strong.copy()
    while True:  # grow strong edges through 8-connected weak pixels
        e = np.pad(edges, 1)
        grown = np.zeros_like(edges)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= e[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        grown &= weak
        if (grown == edges).all():
            break
        edges = grown | edges
    return (edges * 255).astype(np.uint8)


def _lineart_standard(pixels: Any, unit: ControlUnit) -> Any:
    """The extension's lineart_standard: how much darker than its blurred surroundings each pixel is."""
    import numpy as np

    x = pixels.astype(np.float32)
    g = gaussian_blur(x, 6.0)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    bright = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(bright)) if bright.size else 16.0)
    intensity *= 127
    return intensity.clip(0, 255).astype(np.uint8)


def _scribble_xdog(pixels: Any, unit: ControlUnit) -> Any:
    """The extension's scribble_xdog: a thresholded difference of Gaussians (Threshold A)."""
    import numpy as np

    x = pixels.astype(np.float32)
    dog = (255 - np.min(gaussian_blur(x, 5.0) - gaussian_blur(x, 0.5), axis=2)).clip(0, 255).astype(np.uint8)
    out = np.zeros(dog.shape, dtype=np.uint8)
    doubled = (2 * (255 - dog.astype(np.int32))) & 0xFF  # uint8 arithmetic, wrapping, as the extension's numpy
    out[doubled > unit.thresholds()[0]] = 255
    return out


def _canny(pixels: Any, unit: ControlUnit) -> Any:
    low, high = unit.thresholds()
    return canny(pixels, low, high)


def _invert(pixels: Any, unit: ControlUnit) -> Any:
    return 255 - pixels


DETECTORS = {"canny": _canny, "lineart_standard": _lineart_standard, "scribble_xdog": _scribble_xdog,
             "invert": _invert}


def _resize(image: Any, size: tuple[int, int]) -> Any:
    """Pillow resize: bicubic up, box (area) down, as the extension's cv2 INTER_CUBIC / INTER_AREA."""
    from PIL import Image

    up = size[0] * size[1] > image.size[0] * image.size[1]
    return image.resize(size, Image.Resampling.BICUBIC if up else Image.Resampling.BOX)


def detect(unit: ControlUnit, image: Any, resolution: int) -> Any:
    """The unit's preprocessor on `image` (short side scaled to `resolution`); `none`: the image itself."""
    import numpy as np
    from PIL import Image

    detector = DETECTORS.get(unit.module)
    if detector is None:
        return image
    w, h = image.size
    k = resolution / min(w, h)
    scaled = _resize(image, (max(1, int(round(w * k))), max(1, int(round(h * k)))))
    result = detector(np.asarray(scaled), unit)
    if result.ndim == 2:
        result = np.repeat(result[..., None], 3, axis=2)
    return Image.fromarray(result.astype(np.uint8))


def otsu(gray: Any) -> int:
    """Otsu's threshold of an 8-bit image (as cv2.THRESH_OTSU): the level that best splits its histogram."""
    import numpy as np

    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    mean0 = np.cumsum(hist * levels) / np.maximum(weight0, 1)
    mean1 = (np.sum(hist * levels) - np.cumsum(hist * levels)) / np.maximum(weight1, 1)
    return int(np.argmax(weight0 * weight1 * (mean0 - mean1) ** 2))


def _resize_map(image: Any, size: tuple[int, int]) -> Any:
    """Resize a map; a binary one (edges, scribbles) stays binary: grey mean, then Otsu's threshold,
    as the extension's high_quality_resize (which also thins one-pixel edges; sdcli does not)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image)
    binary = len(np.unique(pixels)) == 2 and pixels.min() < 16 and pixels.max() > 240
    resized = _resize(image, size)
    if not binary or resized.size == image.size:
        return resized
    gray = np.asarray(resized, dtype=np.float32).mean(axis=2).clip(0, 255).astype(np.uint8)
    out = np.where(gray > otsu(gray), 255, 0).astype(np.uint8)
    return Image.fromarray(np.repeat(out[..., None], 3, axis=2))


def fit(image: Any, size: tuple[int, int], resize_mode: str) -> Any:
    """The map at the generation size: just (stretch), crop (fill, then centre-crop) or fill (fit, black pad)."""
    from PIL import Image

    w, h = image.size
    tw, th = size
    if resize_mode == "just":
        return _resize_map(image, size)
    k = (max if resize_mode == "crop" else min)(tw / w, th / h)
    nw, nh = max(1, int(round(w * k))), max(1, int(round(h * k)))
    scaled = _resize_map(image, (nw, nh))
    canvas = Image.new("RGB", size)
    canvas.paste(scaled, ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def control_hint(unit: ControlUnit, image: Any, size: tuple[int, int]) -> tuple[Any, int]:
    """The unit's control image for a generation of `size`: [H, W, 3] float32 in [0, 1], and the
    Processor Res used."""
    import numpy as np

    resolution = processor_resolution(unit, image.size, size)
    fitted = fit(detect(unit, image, resolution), size, unit.resize_mode)
    return np.asarray(fitted, dtype=np.float32) / 255.0, resolution
