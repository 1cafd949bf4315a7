"""Flux.1 Kontext [dev]: Flux.1 dev's transformer trained to edit by instruction, the reference image's latent
tokens placed after the image's own (families.flux.kontext_tokens, ComfyUI's placement), everything else Flux.1
dev's (text, guidance input, sampling).

A Kontext transformer has Flux.1 dev's tensor names and shapes, so its single files cannot be told from dev's: it
is detected from a diffusers folder only (model_index.json: FluxKontextPipeline). Imported without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcli.families.base import Json, Shapes
from sdcli.families.flow import flow_capabilities
from sdcli.families.flux import FLUX_DEFAULTS, FLUX_PIPELINES, LATENT, FluxFamily

# ComfyUI's FluxKontextImageScale (comfy_extras/nodes_flux.py; the same list as diffusers' FluxKontextPipeline's
# PREFERRED_KONTEXT_RESOLUTIONS): the sizes Kontext was trained on, (width, height).
KONTEXT_RESOLUTIONS = ((672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
                       (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
                       (1456, 720), (1504, 688), (1568, 672))
RELEASED_SIDE = 1024  # the released model's native side; a tiny model's is smaller


def kontext_size(size: tuple[int, int]) -> tuple[int, int]:
    """FluxKontextImageScale's choice: the trained size whose aspect ratio is nearest the image's (ties: the
    smaller width)."""
    aspect = size[0] / size[1]
    return min(KONTEXT_RESOLUTIONS, key=lambda wh: (abs(aspect - wh[0] / wh[1]), wh[0], wh[1]))


@dataclass(frozen=True)
class KontextFamily(FluxFamily):
    """Flux.1 Kontext: Flux.1 dev plus reference images; detected from its folder's pipeline class only."""

    def detect(self, shapes: Shapes) -> bool:
        return False  # its files are Flux.1 dev's, key for key

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return str(index.get("_class_name", "")).startswith("FluxKontext")

    def fit_reference(self, image: Any, size: tuple[int, int]) -> Any:
        """FluxKontextImageScale's resize (ComfyUI's common_upscale, "lanczos", "center"): the crop to the target's
        aspect ratio rounded to whole pixels, as many off each side, then Lanczos over what is left; PIL's
        fractional crop box (the base family's) moves pixels by a few levels where the crop is not whole."""
        from PIL import Image

        if image.size == size:
            return image
        (width, height), (new_width, new_height) = image.size, size
        aspect, new_aspect = width / height, new_width / new_height
        x = round((width - width * (new_aspect / aspect)) / 2) if aspect > new_aspect else 0
        y = round((height - height * (aspect / new_aspect)) / 2) if aspect < new_aspect else 0
        return image.crop((x, y, width - x, height - y)).resize(size, Image.Resampling.LANCZOS)

    def reference_size(self, size: tuple[int, int], native: int) -> tuple[int, int]:
        """The released model: FluxKontextImageScale's trained size (kontext_size); a tiny model: the image's own
        size cut to whole tokens (the trained sizes are for a 1024 px model)."""
        if native >= RELEASED_SIDE:
            return kontext_size(size)
        return super().reference_size(size, native)


# Forge's Flux preset, as ComfyUI's Kontext template runs it: CFG 1, Euler, Simple, Flux guidance 2.5.
KONTEXT_DEFAULTS = {**FLUX_DEFAULTS, "distilled_cfg_scale": 2.5}
FLUX_KONTEXT = KontextFamily("flux-kontext", "Flux.1 Kontext", {**FLUX_PIPELINES, "edit": "FluxKontextPipeline"}, 1024,
                             configs="flux-dev",
                             capabilities=flow_capabilities("Flux dev", distilled_guidance=True, references=4),
                             latent=LATENT, defaults=KONTEXT_DEFAULTS, guidance=True, shift=1.15)
