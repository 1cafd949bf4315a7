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

import math
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


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def comfy_vision_inputs(images: list[Any]) -> tuple[Any, Any]:
    """Qwen2.5-VL's pixel_values and image_grid_thw for float images [1, 3, H, W] in 0..1 as ComfyUI prepares
    them (its qwen_vl process_qwen2vl_images): sides rounded to multiples of 28 (or scaled into the pixel range),
    torch's bilinear resize without antialiasing on the float pixels (transformers' processor: a bicubic Pillow
    resize of 8-bit pixels), CLIP's mean and std, the frame doubled for the temporal patch, then the processor's
    patch order (merged 2x2 groups of 14 px patches). Hand-written: ComfyUI's resize is no library's."""
    patch, merge, temporal = PIXELS["patch_size"], PIXELS["merge_size"], PIXELS["temporal_patch_size"]
    factor = patch * merge
    rows, grids = [], []
    for image in images:
        height, width = image.shape[-2:]
        h, w = round(height / factor) * factor, round(width / factor) * factor
        if h * w > PIXELS["max_pixels"]:
            beta = math.sqrt(height * width / PIXELS["max_pixels"])
            h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(
                width / beta / factor) * factor)
        elif h * w < PIXELS["min_pixels"]:
            beta = math.sqrt(PIXELS["min_pixels"] / (height * width))
            h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
        resized = torch.nn.functional.interpolate(image.float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
        frames = ((resized - mean) / std)[None].repeat(temporal, 1, 1, 1)  # [T, C, H, W]
        gh, gw = h // patch, w // patch
        grouped = frames.reshape(1, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
        rows.append(grouped.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gh * gw, 3 * temporal * patch * patch))
        grids.append(torch.tensor([1, gh, gw]))
    return torch.cat(rows), torch.stack(grids)


class QwenImageEditPromptEncoder(QwenPromptEncoder):
    """Prompts -> Conditioning for Qwen-Image-Edit (families.base.PromptEncoder): Qwen2.5-VL's last hidden states
    of the templated instruction with the reference image's vision tokens, after the system turn; cached per text."""

    model, encoder = "Qwen-Image-Edit", "Qwen2.5-VL"
    comfy_placement = True  # ComfyUI's rotary positions on its text path (families.qwen_rotary)

    def __init__(self, tokenizer: Any, text_encoder: Any, images: list[Any], emphasis: str = "original",
                 pictures: bool = False, comfy: bool = False):
        """`pictures`: Edit Plus's "Picture 1: ..., Picture 2: ..." before each image (QwenImageEditPlusPipeline);
        `comfy`: `images` are float pixels prepared as ComfyUI does (comfy_vision_inputs), not PIL images."""
        super().__init__(tokenizer, text_encoder, emphasis)
        self.drop = len(self.tokenizer(PREFIX, add_special_tokens=False)["input_ids"])
        if comfy:
            self.pixel_values, self.grid = comfy_vision_inputs(images)
        else:
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
