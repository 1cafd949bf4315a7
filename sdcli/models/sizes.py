"""The published models' sizes and what --cpu-offload auto plans for them (README "Memory plans by family").

One row a published model: the parameters of its transformer, text encoders and VAE, and the transformer's width.
Counted from diffusers' and transformers' model classes built on the meta device with the released configs
(diffusers' class defaults are the released Z-Image, Qwen-Image and Chroma; SD3.5 large: sdcli's bundled sd3 config;
Flux.2 klein: 5 double + 20 single blocks of 24 heads (4B), 8 + 24 of 32 heads (9B); Flux.2 dev and its Mistral Small 3
text model: sdcli's bundled flux2-dev config; Qwen3-4B/8B and Qwen2.5-VL-7B:
their model cards' configs; T5-XXL, CLIP-L/G, the Flux VAE: the bundled configs), except SD3.5 medium's transformer
(its model card's 2.5B). The plan is models.runtime.plan_offload's for a 1024x1024 image (4096 image tokens + 512 text
tokens, CFG's two rows) with the card's memory less what the CUDA context keeps. Pure: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdcli.models.runtime import GIB, network_working_bytes, plan_offload

CUDA_CONTEXT = int(0.6 * GIB)  # what the CUDA context and the driver keep on a card
CARDS = (24, 16, 12, 8)  # GB of VRAM
TOKENS = 4096 + 512  # a 1024x1024 image's tokens (16x16 pixels a token in every family here) + the text's
# Bytes a weight takes, by storage: bf16; fp8 (--low-bits float8-*, --quantize fp8) and bitsandbytes int8 (a byte, plus
# a scale per row); bitsandbytes nf4 (4 bits, plus an fp32 absmax per block of 64).
STORAGE_BYTES: Mapping[str, float] = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "nf4": 4.5 / 8}

T5_XXL, CLIP_L, CLIP_G = 4_762_310_656, 123_650_304, 694_659_840
QWEN3_4B, QWEN3_8B, QWEN25_VL_7B = 4_022_468_096, 8_190_735_360, 8_292_166_656
FLUX_VAE, FLUX2_VAE, QWEN_VAE = 83_819_683, 84_046_115, 126_892_531
MISTRAL_SMALL_3 = 22_901_314_560  # Flux.2 dev's text model (Mistral Small 3's language model, as in ComfyUI's file)


@dataclass(frozen=True)
class Published:
    """One published model's parts in parameters; `big`: its big text encoder (what --quantize-text-encoder takes)."""

    label: str
    family: str  # families.FAMILIES key
    transformer: int
    big: int
    small: int  # the other text encoders (CLIP), kept at bf16
    vae: int
    width: int  # the transformer's hidden width (heads x head dim)


PUBLISHED: tuple[Published, ...] = (
    Published("Flux.1 dev", "flux-dev", 11_901_408_320, T5_XXL, 123_060_480, FLUX_VAE, 3072),
    Published("Z-Image Turbo", "zimage", 6_154_908_736, QWEN3_4B, 0, FLUX_VAE, 3840),
    Published("Qwen-Image", "qwen-image", 20_430_401_088, QWEN25_VL_7B, 0, QWEN_VAE, 3072),
    Published("Flux.2 klein 4B", "flux2-klein", 3_875_544_576, QWEN3_4B, 0, FLUX2_VAE, 3072),
    Published("Flux.2 klein 9B", "flux2-klein", 9_078_581_248, QWEN3_8B, 0, FLUX2_VAE, 4096),
    Published("Flux.2 dev", "flux2-dev", 32_223_281_152, MISTRAL_SMALL_3, 0, FLUX2_VAE, 6144),
    Published("Chroma", "chroma", 8_899_983_424, T5_XXL, 0, FLUX_VAE, 3072),
    Published("SD3.5 medium", "sd3", 2_500_000_000, T5_XXL, CLIP_L + CLIP_G, FLUX_VAE, 1536),
    Published("SD3.5 large", "sd3", 8_056_627_520, T5_XXL, CLIP_L + CLIP_G, FLUX_VAE, 2432),
)
# The storages a row of the table shows: (the transformer's, the big text encoder's).
STORAGES = (("bf16", "bf16"), ("fp8", "bf16"), ("int8", "bf16"), ("nf4", "bf16"), ("nf4", "nf4"))


def part_bytes(model: Published, storage: str, encoder: str = "bf16") -> dict[str, int]:
    """Bytes of each part with the transformer stored as `storage` and the big text encoder as `encoder`."""
    parts = {"transformer": model.transformer * STORAGE_BYTES[storage], "big_text_encoder": model.big *
             STORAGE_BYTES[encoder], "text_encoders": model.small * 2.0, "vae": model.vae * 2.0}
    return {name: int(size) for name, size in parts.items() if size}


def offload_plan(model: Published, storage: str, encoder: str, card_gb: int) -> str:
    """What --cpu-offload auto picks for a 1024x1024 job of `model` on a card of `card_gb` GB."""
    working = network_working_bytes(TOKENS, model.width, 1, 2)
    return plan_offload(part_bytes(model, storage, encoder), network="transformer",
                        free_bytes=card_gb * GIB - CUDA_CONTEXT, working=working)[0]


def table_rows() -> list[str]:
    """The README table's rows: model, storage, GiB of transformer and text encoders, the plan on each card."""
    rows = []
    for model in PUBLISHED:
        for storage, encoder in STORAGES:
            parts = part_bytes(model, storage, encoder)
            name = storage if encoder == "bf16" else f"{storage} + text encoder {encoder}"
            encoders = (parts.get("big_text_encoder", 0) + parts.get("text_encoders", 0)) / GIB
            plans = " | ".join(offload_plan(model, storage, encoder, card) for card in CARDS)
            rows.append(f"| {model.label} | {name} | {parts['transformer'] / GIB:.1f} | {encoders:.1f} | {plans} |")
    return rows
