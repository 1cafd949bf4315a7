"""Qwen-Image-Edit prompt encoding as diffusers' QwenImageEditPipeline._get_qwen_prompt_embeds computes it (and
QwenImageEditPlusPipeline's: each image as "Picture i: " and its tokens): the instruction goes into Qwen2.5-VL's
chat template after the edit pipeline's system turn, the reference image as vision tokens before it
(<|vision_start|>, one <|image_pad|> per merged 2x2 patch of the image's 14 px grid, <|vision_end|>); the text
encoder sees the image's pixels through its vision tower; its last hidden states after the template's system turn
(diffusers' prompt_template_encode_start_idx, 64 with the real tokenizer: counted here as the prefix's own tokens)
are the conditioning, the image's tokens included.

The image is prepared as Qwen2VLImageProcessor does with Qwen-Image-Edit's settings (resized to multiples of 28
within 3136..12845056 pixels, CLIP mean/std, 14 px patches, temporal patch 2), by transformers' Pillow image
processor: sdcli does not build the pipeline's Qwen2VLProcessor (in transformers 5 it needs torchvision for its
video half). Prompts are read literally as for Qwen-Image. Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any

import torch

from sdcli.conditioning.qwen import QwenPromptEncoder

SYSTEM = ("Describe the key features of the input image (color, shape, size, texture, objects, background), then "
          "explain how the user's text instruction should alter or modify the image. Generate a new image that meets "
          "the user's requirements while maintaining consistency with the original input where appropriate.")
PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
TEMPLATE = PREFIX + "{images}{prompt}<|im_end|>\n<|im_start|>assistant\n"
IMAGE = "<|vision_start|>{}<|vision_end|>"  # one image's vision tokens; Edit Plus prefixes "Picture i: "
IMAGE_PAD = "<|image_pad|>"
# Qwen-Image-Edit's processor/preprocessor_config.json (Qwen2.5-VL's): the pixel range and the patch geometry.
PIXELS = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


def image_processor() -> Any:
    """transformers' Pillow Qwen2-VL image processor with Qwen-Image-Edit's settings."""
    processor: Any
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        processor = Qwen2VLImageProcessorPil
    except ImportError:  # an older transformers: its one (Pillow) Qwen2-VL image processor
        from transformers import Qwen2VLImageProcessor
        processor = Qwen2VLImageProcessor
    return processor(**PIXELS)


class QwenImageEditPromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Qwen-Image-Edit (families.base.PromptEncoder): Qwen2.5-VL's last hidden states
    of the templated instruction with the reference image's vision tokens, after the system turn; cached per text."""

    model, encoder = "Qwen-Image-Edit", "Qwen2.5-VL"

    def __init__(self, tokenizer: Any, text_encoder: Any, images: list[Any], emphasis: str = "original",
                 pictures: bool = False):
        """`pictures`: Edit Plus's "Picture 1: ..., Picture 2: ..." before each image (QwenImageEditPlusPipeline)."""
        super().__init__(tokenizer, text_encoder, emphasis)
        self.drop = len(self.tokenizer(PREFIX, add_special_tokens=False)["input_ids"])
        pixels = image_processor()(images=images, return_tensors="pt")
        self.pixel_values, self.grid = pixels["pixel_values"], pixels["image_grid_thw"]
        merged = PIXELS["merge_size"] ** 2
        tokens = [IMAGE.format(IMAGE_PAD * (int(row.prod()) // merged)) for row in self.grid]
        self.images = "".join(f"Picture {i}: {t}" if pictures else t for i, t in enumerate(tokens, start=1))

    def token_ids(self, text: str) -> list[int]:
        """The templated prompt's token ids, the images' pad tokens expanded (as Qwen2VLProcessor does)."""
        templated = TEMPLATE.format(images=self.images, prompt=self.literal(text))
        return list(self.tokenizer(templated, add_special_tokens=False)["input_ids"])

    def states(self, text: str) -> torch.Tensor:
        device = self.text_encoder.device
        ids = torch.tensor([self.token_ids(text)], device=device)
        out = self.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True,
                                pixel_values=self.pixel_values.to(device, self.text_encoder.dtype),
                                image_grid_thw=self.grid.to(device))
        return out.hidden_states[-1][:, self.drop:]
