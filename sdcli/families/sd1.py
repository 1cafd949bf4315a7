"""Stable Diffusion 1.x: OpenAI CLIP ViT-L text encoder, 4-channel 8x VAE latents, eps prediction."""

from __future__ import annotations

from typing import Any

from sdcli.families.base import Capabilities, Json, PromptEncoder
from sdcli.families.unet import UNetFamily

SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD_PIPELINES = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
                "inpaint": "StableDiffusionInpaintPipeline", "outpaint": "StableDiffusionInpaintPipeline"}
# The SD pipelines' loaders ask for a safety checker the bundled configs do not have.
SD_LOAD_KWARGS = {"safety_checker": None, "requires_safety_checker": False}
SD_CAPABILITIES = Capabilities(controlnet="sd")


class SD1Family(UNetFamily):
    """SD 1.x: last in the detection order, it takes any diffusers folder the others did not."""

    def detect_folder(self, index: Json, unet: Json) -> bool:
        return True

    def prompt_encoder(self, pipe: Any, clip_skip: int, emphasis: str, size: tuple[int, int],
                       distilled_cfg: float | None = None) -> PromptEncoder:
        """The WebUI's CLIP encoding (one text encoder; CLIP skip, emphasis, BREAK and 75-token chunks)."""
        from sdcli.conditioning.encoding import ClipPromptEncoder

        return ClipPromptEncoder(pipe.tokenizer, pipe.text_encoder, clip_skip, emphasis)


SD1 = SD1Family("sd1", "Stable Diffusion 1.x", SD_PIPELINES, 512, detect_keys=(SD1_CLIP,), configs="sd1",
                capabilities=SD_CAPABILITIES, load_kwargs=SD_LOAD_KWARGS)
