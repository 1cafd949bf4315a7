"""Flux.2 dev caption upsampling with an edit's reference images (conditioning.flux2_upsample) on the tiny model:
the text encoder's inputs are what transformers' own PixtralProcessor makes in diffusers' upsample_prompt (ids,
mask, pixels), the rewrite is diffusers' seeded alike and moves with the image and the temperature, several images
are seen side by side, and what cannot be done is refused in one line naming the flag."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch
from diffusers import Flux2Pipeline
from PIL import Image

from sdcli.errors import UsageError
from sdcli.families.flux2_dev import FLUX2_DEV

PROMPT = "make it blue"
SEED = 3  # a seed whose rewrite differs between the red and the blue reference (the tiny model sees them)


@pytest.fixture(scope="module")
def pipe(tiny_flux2_dev_pipe):
    return tiny_flux2_dev_pipe.pipe


def pixtral_processor(pipe):
    """transformers' PixtralProcessor over the tiny model's tokenizer with its Pillow image processor, as the
    text encoder's config sizes them. Its module imports the torchvision image processor's module for one helper
    (get_resize_output_image_size, not used on this path): the Pillow module's same function stands in for it."""
    from transformers.models.pixtral import image_processing_pil_pixtral as pil

    name = "transformers.models.pixtral.image_processing_pixtral"
    if name not in sys.modules:
        try:
            __import__(name)
        except ImportError:  # no torchvision
            sys.modules[name] = types.SimpleNamespace(get_resize_output_image_size=pil.get_resize_output_image_size)
    from transformers.models.pixtral.processing_pixtral import PixtralProcessor

    config = pipe.text_encoder.config
    patch = config.vision_config.patch_size
    images = pil.PixtralImageProcessorPil(patch_size={"height": patch, "width": patch},
                                          size={"longest_edge": config.vision_config.image_size})
    return PixtralProcessor(image_processor=images, tokenizer=pipe.tokenizer, patch_size=patch,
                            spatial_merge_size=config.spatial_merge_size, chat_template=pipe.tokenizer.chat_template)


def diffusers_edit_rewrite(pipe, prompt: str, images: list, temperature: float, seed: int) -> str:
    """diffusers' own upsample_prompt with one prompt's reference images, through transformers' PixtralProcessor,
    torch's generator seeded with `seed`."""
    theirs = SimpleNamespace(tokenizer=pixtral_processor(pipe), text_encoder=pipe.text_encoder,
                             image_processor=pipe.image_processor, upsampling_max_image_size=768 ** 2)
    torch.manual_seed(seed)
    return Flux2Pipeline.upsample_prompt(theirs, prompt, images=[images], temperature=temperature, device="cpu")[0]


def _square(color: str, side: int = 64) -> Image.Image:
    return Image.new("RGB", (side, side), color)


def _gradients() -> list[Image.Image]:
    """Two references of other sizes and aspects (the second taller), side by side 160x112 > 128 px: scaled."""
    return [Image.linear_gradient("L").convert("RGB").resize((96, 64)),
            Image.radial_gradient("L").convert("RGB").resize((64, 112))]


def test_the_inputs_are_the_pixtral_processors(pipe):
    """Ids, mask and pixels as diffusers' upsample_prompt has the PixtralProcessor make them for two references
    (concatenated, resized to whole merged patches, spread over [IMG] ... [IMG_BREAK] ... [IMG_END])."""
    from diffusers.pipelines.flux2.pipeline_flux2 import _validate_and_process_images, format_input
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE_UPSAMPLING_I2I

    images = _gradients()
    ours = FLUX2_DEV.prompt_upsampler(pipe, 0.15, images).inputs(PROMPT)
    # A folder whose tokenizer loads as the PixtralProcessor (where torchvision is installed) gives the same.
    processor = pixtral_processor(pipe)
    held = SimpleNamespace(tokenizer=processor, text_encoder=pipe.text_encoder)
    for key, value in FLUX2_DEV.prompt_upsampler(held, 0.15, images).inputs(PROMPT).items():
        assert torch.equal(value, ours[key]), key
    shown = _validate_and_process_images([images], pipe.image_processor, 768 ** 2)
    theirs = processor.apply_chat_template(
        format_input([PROMPT], SYSTEM_MESSAGE_UPSAMPLING_I2I, shown), add_generation_prompt=True, tokenize=True,
        return_dict=True, return_tensors="pt", padding="max_length", truncation=True, max_length=2048)
    assert set(ours) == {"input_ids", "attention_mask", "pixel_values", "image_sizes"}
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key
    assert ours["image_sizes"].tolist() == [[96, 128]]  # 160x112 -> longest side 128 -> whole 32 px patches
    tokens = pipe.tokenizer.convert_ids_to_tokens(ours["input_ids"][0])
    assert tokens.count("[IMG]") == 12 and tokens.count("[IMG_BREAK]") == 2 and tokens.count("[IMG_END]") == 1


@pytest.mark.slow
def test_the_rewrite_is_diffusers_with_the_image_seeded_alike(pipe):
    red = FLUX2_DEV.prompt_upsampler(pipe, 0.15, [_square("red")])
    ours = red(PROMPT, SEED)
    assert ours.strip() and ours == diffusers_edit_rewrite(pipe, PROMPT, [_square("red")], 0.15, SEED)
    # The text encoder sees the image: another reference, another rewrite (which diffusers writes too).
    blue = FLUX2_DEV.prompt_upsampler(pipe, 0.15, [_square("blue")])(PROMPT, SEED)
    assert blue != ours and blue == diffusers_edit_rewrite(pipe, PROMPT, [_square("blue")], 0.15, SEED)
    # Another temperature, another rewrite; text to image (no reference) writes under another system message.
    assert FLUX2_DEV.prompt_upsampler(pipe, 0.6, [_square("red")])(PROMPT, SEED) != ours
    assert FLUX2_DEV.prompt_upsampler(pipe, 0.15)(PROMPT, SEED) != ours


@pytest.mark.slow
def test_several_references_are_seen_side_by_side(pipe):
    images = _gradients()
    ours = FLUX2_DEV.prompt_upsampler(pipe, 0.15, images)(PROMPT, SEED)
    assert ours == diffusers_edit_rewrite(pipe, PROMPT, images, 0.15, SEED)


def test_what_cannot_see_the_images_is_refused_by_name(pipe, monkeypatch):
    from transformers import MistralForCausalLM

    import sdcli.models.tiny_mistral as tiny_mistral

    # A text model with its head but no vision tower writes text to image only.
    text_only = SimpleNamespace(tokenizer=pipe.tokenizer,
                                text_encoder=MistralForCausalLM(pipe.text_encoder.config.text_config))
    assert FLUX2_DEV.prompt_upsampler(text_only, 0.15) is not None
    with pytest.raises(UsageError, match=r"^--upsample-prompt: the text encoder \(MistralForCausalLM\) has no "
                                         r"vision tower to see the reference images \(--image\) with; "):
        FLUX2_DEV.prompt_upsampler(text_only, 0.15, [_square("red")])
    # A tokenizer without Pixtral's row and end tokens (a tiny model built before they were added).
    monkeypatch.setattr(tiny_mistral, "SPECIALS", tiny_mistral.SPECIALS[:-2])
    old = SimpleNamespace(tokenizer=tiny_mistral.tiny_mistral_tokenizer(), text_encoder=pipe.text_encoder)
    with pytest.raises(UsageError, match=r"^--upsample-prompt: the tokenizer has no \[IMG_BREAK\] or \[IMG_END\] "
                                         "token to show Mistral the reference images"):
        FLUX2_DEV.prompt_upsampler(old, 0.15, [_square("red")])
    # An image of one token (transformers' Mistral 3 cannot take it).
    with pytest.raises(UsageError, match=r"^--image: 32x32 pixels is one token to Mistral's vision tower \(32 px "
                                         r"each\), which cannot take it; give a larger reference image$"):
        FLUX2_DEV.prompt_upsampler(pipe, 0.15, [_square("red", 32)])
