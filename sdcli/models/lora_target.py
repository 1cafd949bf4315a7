"""Which model family a LoRA file was made for, from its layer names alone: for the one-line refusal of a LoRA
that does not fit the loaded model ("a LoRA for Qwen-Image, not for Z-Image").

One row per family (or group of families whose LoRA layer names cannot be told apart), asked in order; a row
matches when any key holds one of its marks (names only that family's network has, in every spelling the
formats use: kohya's '_' or '.'). A file no row marks gets no guess, and the refusal says only that it does not
fit. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_SEP = r"[._]"  # kohya spells module paths with '_', the others with '.'


@dataclass(frozen=True)
class LoraTarget:
    """A family (or group) a LoRA's layer names mark: its label in refusals, the sdcli families it fits."""

    label: str
    families: tuple[str, ...]  # sdcli.families.FAMILIES names
    marks: re.Pattern[str]


LORA_TARGETS: tuple[LoraTarget, ...] = (
    LoraTarget("Z-Image", ("zimage",),
               re.compile(rf"noise_refiner|context_refiner|feed_forward{_SEP}w[123]|(^|{_SEP})attention{_SEP}"
                          rf"(qkv|out|to_)")),
    LoraTarget("Qwen-Image", ("qwen-image",),
               re.compile(rf"(img|txt)_mod{_SEP}1({_SEP}|$)|(img|txt)_mlp{_SEP}net")),
    LoraTarget("Flux.2", ("flux2-klein", "flux2-klein-base", "flux2-dev"),
               re.compile(rf"(double|single)_stream_modulation|to_qkv_mlp_proj|ff(_context)?{_SEP}linear_(in|out)")),
    LoraTarget("SD3", ("sd3",), re.compile(rf"joint_blocks|(^|{_SEP})(x|context)_block{_SEP}")),
    LoraTarget("Stable Diffusion 1.x/2.x/XL", ("sd1", "sd2", "sdxl", "sdxl-refiner"),
               re.compile(rf"(down|up)_blocks{_SEP}\d|mid_block{_SEP}|(input|output)_blocks{_SEP}\d|middle_block")),
    LoraTarget("Chroma", ("chroma",), re.compile(r"distilled_guidance_layer")),
    # BFL names and diffusers' Flux.1 names are shared by Flux.1, Chroma and Flux.2's attention layers.
    LoraTarget("Flux.1, Chroma or Flux.2",
               ("flux-dev", "flux-schnell", "flux-fill", "flux-control", "chroma", "flux2-klein", "flux2-klein-base",
                "flux2-dev"),
               re.compile(r"double_blocks|single_blocks|single_transformer_blocks|processor[._](qkv|proj)_lora")),
)


def lora_target(keys: Iterable[str]) -> LoraTarget | None:
    """The first row whose marks some key holds (a LoRA's family by its layer names), or None."""
    names = list(keys)
    return next((row for row in LORA_TARGETS if any(row.marks.search(key) for key in names)), None)
