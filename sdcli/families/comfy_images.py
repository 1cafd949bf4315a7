"""ComfyUI's image tensors and resizes, for --comfy-edit (Family.comfy_edit_inputs): an IMAGE is float pixels
[B, H, W, C] in 0..1 (LoadImage: 8-bit / 255), resized by comfy.utils.common_upscale and VAE-encoded after the
VAE's crop to whole latent cells. The same tensor operations in the same order as ComfyUI's, layout included: a
channels-last tensor and a contiguous one take different float paths through torch's kernels (a level apart on
the tiny models). Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any


def comfy_image(image: Any) -> Any:
    """LoadImage of a PIL image: [1, H, W, 3] float32 (uint8 / 255)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def comfy_size(area: float, size: tuple[int, int], multiple: int = 1) -> tuple[int, int]:
    """The edit nodes' and ImageScaleToTotalPixels' size: `size` scaled by sqrt(area / its pixels), each side
    rounded to `multiple`."""
    import math

    scale = math.sqrt(area / (size[0] * size[1]))
    return round(size[0] * scale / multiple) * multiple, round(size[1] * scale / multiple) * multiple


def common_upscale(image: Any, size: tuple[int, int], method: str) -> Any:
    """comfy.utils.common_upscale(image.movedim(-1, 1), width, height, method, "disabled").movedim(1, -1): an IMAGE
    to `size` (width, height). "lanczos": Pillow's Lanczos of each image's pixels x 255 clipped and truncated to
    8 bits, / 255; any other method torch's interpolation of that name (no antialiasing, corners not aligned)."""
    import numpy as np
    import torch
    from PIL import Image

    samples = image.movedim(-1, 1)
    if method == "lanczos":
        resized = []
        for one in samples:
            eight = Image.fromarray(np.clip(255.0 * one.movedim(0, -1).numpy(), 0, 255).astype(np.uint8))
            pixels = np.asarray(eight.resize(size, Image.Resampling.LANCZOS)).astype(np.float32) / 255.0
            resized.append(torch.from_numpy(pixels).movedim(-1, 0))
        samples = torch.stack(resized)
    else:
        samples = torch.nn.functional.interpolate(samples, size=(size[1], size[0]), mode=method)
    return samples.movedim(1, -1)


def vae_input(image: Any, cell: int) -> Any:
    """VAE.encode's pixels: the IMAGE's sides cut to whole `cell`s ((side % cell) // 2 off the start), channels
    first as its movedim leaves them: [B, 3, h, w] in 0..1."""
    for dim in (1, 2):
        whole = image.shape[dim] // cell * cell
        if whole != image.shape[dim]:
            image = image.narrow(dim, (image.shape[dim] % cell) // 2, whole)
    return image[:, :, :, :3].movedim(-1, 1)
