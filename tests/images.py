"""Input files for the image tests (core and CLI)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FAST = ("--steps", "2", "--seed", "5")


def write_inputs(folder: Path, size: tuple[int, int] = (48, 40)) -> tuple[Path, Path]:
    """A smooth random picture and a mask with a white square in the middle."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).filter(ImageFilter.SMOOTH)
    image.save(folder / "in.png")
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3))
    mask.save(folder / "mask.png")
    return folder / "in.png", folder / "mask.png"


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png")) if folder.exists() else []


@contextmanager
def nan_weights(model, where: str = "vae"):
    """Temporarily fill one weight of a loaded model's VAE decoder (or its UNet's last layer) with NaN."""
    import torch

    pipe = model.pipe
    weight = pipe.vae.post_quant_conv.weight if where == "vae" else pipe.unet.conv_out.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(float("nan"))
    try:
        yield model
    finally:
        with torch.no_grad():
            weight.copy_(saved)
