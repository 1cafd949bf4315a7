"""Flux.2 [dev] caption upsampling (--upsample-prompt TEMPERATURE): the prompt rewritten by the text encoder itself
before it is encoded, as diffusers' Flux2Pipeline does with caption_upsample_temperature (its upsample_prompt).

What diffusers does, done the same way: BFL's text-to-image upsampling system message (diffusers' own constant, read
from diffusers) and the user's prompt ("[IMG]" taken out) in the tokenizer's chat template, padded to 2048 tokens;
Mistral Small 3 (Mistral3ForConditionalGeneration: its language model head) samples at most 512 new tokens at the
temperature; the new tokens decoded without special tokens are the prompt that gets encoded (diffusers asks for
clean_up_tokenization_spaces, which transformers 5 ignores for a BPE tokenizer such as Mistral's). diffusers'
sampling draws from torch's global generator: sdcli seeds it with the image's seed (torch.manual_seed, inside a
forked RNG state so nothing else moves), so image i's text is a function of its seed and replay writes it again.
The user's prompt is read as the family reads prompts (WebUI syntax, emphasis all 1); the rewritten text is
encoded as written.

With reference images (`sdcli edit`), as diffusers' upsample_prompt and BFL's flux2 text_encoder.py take a prompt's
images: BFL's image-editing system message; the images side by side in one (diffusers' Flux2ImageProcessor
.concatenate_images: centred on white) when there are several, scaled down (Lanczos) to at most 768 x 768 pixels,
as a user turn of image blocks before the prompt's turn; Mistral's vision tower sees it as the PixtralProcessor
prepares it. That processor needs torchvision in transformers 5, so it is done here as it does it: the pixels by
transformers' Pillow Pixtral image processor (BFL loads the processor with use_fast=False: this one), resized to
fit the vision tower's image size and rounded up to whole merged patches (patch size x spatial merge, from the text
encoder's config), CLIP mean/std; the chat's "[IMG]" spread over the image's tokens (a row of [IMG] per merged
patch row, each row closed by [IMG_BREAK], the last by [IMG_END]); the text tokenized without special tokens (the
template opens with bos), padded and cut as above. Imported lazily (torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sdcli.conditioning.cond import Conditioning
from sdcli.conditioning.flux2 import Flux2DevPromptEncoder

TEMPLATE_TOKENS = 2048  # diffusers' upsample_prompt: the chat padded (left) / cut to this many tokens
NEW_TOKENS = 512  # diffusers' upsample_prompt: max_new_tokens
IMAGE, IMAGE_BREAK, IMAGE_END = "[IMG]", "[IMG_BREAK]", "[IMG_END]"  # PixtralProcessor's image tokens
IMAGE_TOKENS = (IMAGE, IMAGE_BREAK, IMAGE_END)


class PromptUpsampler:
    """Rewrites prompts with a pipeline's text encoder at one temperature, seeing `images` (an edit's references as
    given; none: text to image); each (prompt, seed) written once."""

    def __init__(self, tokenizer: Any, text_encoder: Any, temperature: float, images: Sequence[Any] = ()):
        self.tokenizer, self.text_encoder, self.temperature = tokenizer, text_encoder, temperature
        self.image = upsampling_image(images) if images else None
        self.vision: tuple[dict[str, torch.Tensor], str] | None = None  # the image's pixels and its tokens
        if self.image is not None:
            self.vision = vision_inputs(self.image, text_encoder.config)
        self.texts: dict[tuple[str, int], str] = {}

    def encoder(self, encoder: Flux2DevPromptEncoder, seed: int) -> UpsampledPromptEncoder:
        """`encoder` with its prompts rewritten (families.base.PromptUpsampler), sampled with `seed`."""
        return UpsampledPromptEncoder(encoder, self, seed)

    def text(self, seed: int) -> str:
        """The first prompt rewritten with `seed` (the first pass's)."""
        return next(text for (_, at), text in self.texts.items() if at == seed)

    def __call__(self, prompt: str, seed: int) -> str:
        """`prompt` (plain text) as the text encoder rewrites it, its sampling seeded with `seed`."""
        if (prompt, seed) not in self.texts:
            self.texts[prompt, seed] = self._rewrite(prompt, seed)
        return self.texts[prompt, seed]

    def inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """The text encoder's inputs for `prompt`: input ids and attention mask (and the image's pixel values and
        size), as diffusers' upsample_prompt has the pipeline's processor make them."""
        from diffusers.pipelines.flux2.system_messages import (
            SYSTEM_MESSAGE_UPSAMPLING_I2I,
            SYSTEM_MESSAGE_UPSAMPLING_T2I,
        )

        # 1. BFL's system message (the editing one with an image), the image's turn, the prompt's turn.
        system = SYSTEM_MESSAGE_UPSAMPLING_T2I if self.image is None else SYSTEM_MESSAGE_UPSAMPLING_I2I
        chat = [{"role": "system", "content": [{"type": "text", "text": system}]}]
        if self.image is not None:
            chat.append({"role": "user", "content": [{"type": "image", "image": self.image}]})
        chat.append({"role": "user", "content": [{"type": "text", "text": prompt.replace(IMAGE, "")}]})
        text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        # 2. The image's pixels, and its "[IMG]" spread over its tokens.
        pixels: dict[str, torch.Tensor] = {}
        if self.vision is not None:
            pixels, tokens = self.vision
            text = text.replace(IMAGE, tokens, 1)
        # 3. Tokenized as the processor does after its chat template (which opens with bos).
        text_tokenizer = getattr(self.tokenizer, "tokenizer", self.tokenizer)  # a processor's text tokenizer
        ids = text_tokenizer(text, add_special_tokens=False, padding="max_length", truncation=True,
                             max_length=TEMPLATE_TOKENS, return_tensors="pt")
        return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], **pixels}

    @torch.no_grad()
    def _rewrite(self, prompt: str, seed: int) -> str:
        inputs = self.inputs(prompt)
        device, dtype = self.text_encoder.device, self.text_encoder.dtype
        moved = {k: v.to(device, dtype) if k == "pixel_values" else v.to(device) for k, v in inputs.items()}
        # Sampling from torch's generator seeded with the image's seed (the global state is put back after).
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            generated = self.text_encoder.generate(**moved, max_new_tokens=NEW_TOKENS, do_sample=True,
                                                   temperature=self.temperature, use_cache=True)
        # The new tokens as text.
        text_tokenizer = getattr(self.tokenizer, "tokenizer", self.tokenizer)
        new = generated[:, inputs["input_ids"].shape[1]:]
        return str(text_tokenizer.batch_decode(new, skip_special_tokens=True)[0])


def upsampling_image(images: Sequence[Any]) -> Any:
    """The one image Mistral sees for an edit's references (PIL): side by side on white if several, then at most
    diffusers' UPSAMPLING_MAX_IMAGE_SIZE pixels (scaled to that area, Lanczos), as diffusers' upsample_prompt."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor
    from diffusers.pipelines.flux2.pipeline_flux2 import UPSAMPLING_MAX_IMAGE_SIZE
    from PIL import Image

    image = Flux2ImageProcessor.concatenate_images(list(images)) if len(images) > 1 else images[0]
    width, height = image.size
    if width * height <= UPSAMPLING_MAX_IMAGE_SIZE:
        return image
    scale = (UPSAMPLING_MAX_IMAGE_SIZE / (width * height)) ** 0.5
    return image.resize((int(width * scale), int(height * scale)), Image.Resampling.LANCZOS)


def vision_inputs(image: Any, config: Any) -> tuple[dict[str, torch.Tensor], str]:
    """`image` (PIL) prepared for Mistral 3's vision tower as the PixtralProcessor of the text encoder's `config`
    does: its pixel values and size, and the image tokens that stand for it in the text."""
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    vision, merge = config.vision_config, config.spatial_merge_size
    patch = vision.patch_size * merge  # the processor's patch: the vision tower's, merged
    processor = PixtralImageProcessorPil(patch_size={"height": vision.patch_size, "width": vision.patch_size},
                                         size={"longest_edge": vision.image_size})
    out = processor(images=[image], patch_size=patch, return_tensors="pt")
    height, width = (int(side) for side in out["image_sizes"][0])
    if height * width == patch * patch:  # transformers' Mistral 3 fails on an image of one token
        from sdcli.errors import UsageError

        raise UsageError(f"--image: {image.width}x{image.height} pixels is one token to Mistral's vision tower "
                         f"({patch} px each), which cannot take it; give a larger reference image")
    rows = [IMAGE * (width // patch) + IMAGE_BREAK] * (height // patch)
    tokens = "".join(rows)[: -len(IMAGE_BREAK)] + IMAGE_END
    return {"pixel_values": out["pixel_values"], "image_sizes": out["image_sizes"]}, tokens


class UpsampledPromptEncoder:
    """A Flux.2 [dev] PromptEncoder (families.base.PromptEncoder) whose prompts are rewritten before they are
    encoded: the prompt read as `encoder` reads it, rewritten by `upsampler` with `seed`, then encoded as written
    (no WebUI syntax in the rewrite); the negative prompt is encoded by `encoder` as it is (diffusers has none)."""

    def __init__(self, encoder: Flux2DevPromptEncoder, upsampler: PromptUpsampler, seed: int):
        self.encoder, self.upsampler, self.seed = encoder, upsampler, seed
        self.capabilities = encoder.capabilities
        self.written = Flux2DevPromptEncoder(encoder.tokenizer, encoder.text_encoder, "none", encoder.guidance)
        self.rewritten: list[str] = []  # the texts encoded, in order (the infotext's `Upsampled prompt`)

    def encode(self, text: str) -> Conditioning:
        rewritten = self.upsampler(self.encoder.literal(text), self.seed)
        if rewritten not in self.rewritten:
            self.rewritten.append(rewritten)
        return self.written.encode(rewritten)

    def negative_encoder(self, all_empty: bool) -> Callable[[str], Conditioning]:
        return self.encoder.negative_encoder(all_empty)

    def pipeline_embeds(self, prompt: str, negative: str) -> dict[str, Any]:
        return {"prompt_embeds": self.encode(prompt).crossattn,
                "negative_prompt_embeds": self.encoder.encode(negative).crossattn}
