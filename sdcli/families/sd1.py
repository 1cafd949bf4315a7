"""Stable Diffusion 1.x: OpenAI CLIP ViT-L text encoder, 4-channel 8x VAE latents, eps prediction."""

from __future__ import annotations

from sdcli.families.base import Family, has_keys

SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD_PIPELINES = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
                "inpaint": "StableDiffusionInpaintPipeline", "outpaint": "StableDiffusionInpaintPipeline"}

SD1 = Family("sd1", "Stable Diffusion 1.x", has_keys(SD1_CLIP), SD_PIPELINES, 512, configs="sd1")
