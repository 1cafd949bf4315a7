"""Stable Diffusion XL, base and refiner: CLIP-L + OpenCLIP-bigG, pooled text, size/crop conditioning."""

from __future__ import annotations

from sdcli.families.base import Family, has_keys

SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
SDXL_CLIP_G = "conditioner.embedders.1.model.token_embedding.weight"
REFINER_CLIP_G = "conditioner.embedders.0.model.token_embedding.weight"
XL_PIPELINES = {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
                "inpaint": "StableDiffusionXLInpaintPipeline", "outpaint": "StableDiffusionXLInpaintPipeline"}

SDXL = Family("sdxl", "Stable Diffusion XL", has_keys(SDXL_CLIP_L, SDXL_CLIP_G), XL_PIPELINES, 1024, is_xl=True,
              configs="sdxl")
# The refiner has only the OpenCLIP-bigG encoder and refines images: no txt2img of its own.
SDXL_REFINER = Family("sdxl-refiner", "Stable Diffusion XL refiner", has_keys(REFINER_CLIP_G),
                      {k: v for k, v in XL_PIPELINES.items() if k != "txt2img"}, 1024, is_xl=True,
                      configs="sdxl-refiner")
