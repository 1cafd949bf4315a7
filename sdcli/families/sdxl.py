"""Stable Diffusion XL, base and refiner: CLIP-L + OpenCLIP-bigG, pooled text, size/crop conditioning."""

from __future__ import annotations

from typing import Any, ClassVar

from sdcli.families.base import Capabilities, Json, PromptEncoder
from sdcli.families.latent import LatentFormat
from sdcli.families.unet import UNetFamily

SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
SDXL_CLIP_G = "conditioner.embedders.1.model.token_embedding.weight"
REFINER_CLIP_G = "conditioner.embedders.0.model.token_embedding.weight"
XL_PIPELINES = {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
                "inpaint": "StableDiffusionXLInpaintPipeline", "outpaint": "StableDiffusionXLInpaintPipeline"}
CLIP_L = ("text_encoder", "tokenizer")
CLIP_G = ("text_encoder_2", "tokenizer_2")


def _xl_folder(index: Json) -> bool:
    return index.get("_class_name", "") in XL_PIPELINES.values()


def _has_clip_l(index: Json) -> bool:
    return bool((index.get("text_encoder") or [None])[0])


class SDXLFamily(UNetFamily):
    """SDXL base: a folder of an SDXL pipeline class with both text encoders."""

    ays = "sdxl"
    aesthetic_score: ClassVar[bool] = False  # the refiner's time ids end in an aesthetic score, not the size

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return _xl_folder(index) and _has_clip_l(index)

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        """Both text encoders as the WebUI's SDXL conditioner (the refiner: bigG and the aesthetic score)."""
        from sdcli.conditioning.sdxl import SDXLPromptEncoder

        return SDXLPromptEncoder(pipe, clip_skip, emphasis, size, aesthetic_score=self.aesthetic_score)


class SDXLRefinerFamily(SDXLFamily):
    """The refiner: saved as an SDXL img2img pipeline without the CLIP-L encoder."""

    aesthetic_score = True

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return _xl_folder(index) and not _has_clip_l(index)


# SDXL's VAE has its own latent colours: the live preview's linear map (ComfyUI's measured factors).
LATENT = LatentFormat(preview_rgb=((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                                   (-0.3165, -0.2492, -0.2188)), preview_bias=(0.1084, -0.0175, -0.0011))

SDXL = SDXLFamily(
    "sdxl", "Stable Diffusion XL", XL_PIPELINES, 1024, detect_keys=(SDXL_CLIP_L, SDXL_CLIP_G), configs="sdxl",
    capabilities=Capabilities(refiner_group="SDXL", controlnet="sdxl",
                              embeddings={"clip_l": CLIP_L, "clip_g": CLIP_G}), latent=LATENT)
# The refiner has only the OpenCLIP-bigG encoder and refines images: no txt2img of its own.
SDXL_REFINER = SDXLRefinerFamily(
    "sdxl-refiner", "Stable Diffusion XL refiner", {k: v for k, v in XL_PIPELINES.items() if k != "txt2img"}, 1024,
    detect_keys=(REFINER_CLIP_G,), configs="sdxl-refiner",
    capabilities=Capabilities(refiner_group="SDXL", refines_only=True, controlnet="sdxl",
                              embeddings={"clip_g": CLIP_G}), latent=LATENT)
