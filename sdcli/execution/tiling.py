"""--tiling: the WebUI's "Tiling" setting, images that tile seamlessly (textures, wallpapers).

As the WebUI does it (sd_hijack's apply_circular, called at the start of every job with the job's
`tiling`): every Conv2d of the model pads circularly instead of with zeros, so the denoising
network and the VAE see the image as wrapping around left-right and top-bottom. sdcli's loaded
models are reused across jobs (batch runs, X/Y/Z, the server), so the padding is set for one
batch and restored afterwards, whatever happens inside: a tiling job never leaks into the next.
Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def conv_layers(*pipes: Any) -> list[torch.nn.Conv2d]:
    """Every Conv2d of the pipelines' model components (UNet, VAE, ...; a shared module once)."""
    layers: dict[int, torch.nn.Conv2d] = {}
    for pipe in pipes:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                layers.update((id(m), m) for m in component.modules() if isinstance(m, torch.nn.Conv2d))
    return list(layers.values())


@contextmanager
def circular_padding(enabled: bool, *pipes: Any) -> Iterator[None]:
    """While inside, the pipelines' Conv2d layers pad circularly when `enabled`; their own padding after."""
    if not enabled:
        yield
        return
    saved = [(layer, layer.padding_mode) for layer in conv_layers(*pipes)]
    try:
        for layer, _ in saved:
            layer.padding_mode = "circular"
        yield
    finally:
        for layer, mode in saved:
            layer.padding_mode = mode
