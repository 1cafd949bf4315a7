"""An edit's reference images as ComfyUI's edit nodes prepare them (families.base.Family.comfy_edit_inputs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EditInputs:
    """An edit's reference images as ComfyUI's edit nodes prepare them (Family.comfy_edit_inputs), float pixels
    [1, 3, h, w] in 0..1 never rounded to 8 bits: what the VAE encodes, what the text encoder sees (empty: the text
    alone), the edit's default size, and the image tokens an image-sized schedule takes at that size where the
    graph sizes it by other pixels than the latent's (None: the latent's cells)."""

    references: tuple[Any, ...]
    seen: tuple[Any, ...]
    size: tuple[int, int]
    schedule_tokens: int | None = None
