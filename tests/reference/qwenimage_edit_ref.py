"""A reference of Qwen-Image-Edit editing: diffusers' own QwenImageEditPipeline (diffusers 0.42) run on the tiny
model's components, with what a tiny model and sdcli's ComfyUI sampling need set from outside:

- its processor: Qwen2VLProcessor cannot be built without torchvision here, so TinyProcessor transcribes what its
  __call__ gives the pipeline (transformers' processing_qwen2_vl.py): the images through Qwen2VLImageProcessor,
  each <|image_pad|> of the text repeated grid_t * grid_h * grid_w / merge_size^2 times, then the tokenizer;
- prompt_template_encode_start_idx: 64 is the real tokenizer's count of the template's system turn; for the tiny
  tokenizer the same place is found as ComfyUI finds it (after the second <|im_start|> and "user\\n");
- calculate_dimensions: the pipelines' pixel areas (1024 x 1024; Edit Plus's Qwen2.5-VL images 384 x 384) scaled
  by (64 / 1024)^2 for the tiny model's native 64 px;
- the schedule: ComfyUI's (ModelSamplingFlux, mu 1.15, Simple) given as `sigmas` to a FlowMatchEulerDiscreteScheduler
  without shifting, so that the pipeline's Euler steps are ComfyUI's Euler; true CFG is not compared (diffusers
  rescales the combined prediction's norm, ComfyUI does not);
- the start noise: torch.randn of the latent from one CPU generator seeded `seed` (ComfyUI's prepare_noise), packed
  by the pipeline's own _pack_latents; the output latents decoded as the other references (0..1, x255 truncated).
Imports nothing from sdcli.
"""

from __future__ import annotations

import torch
from transformers.feature_extraction_utils import BatchFeature

from tests.reference import qwenimage_ref as Q
from tests.reference.comfy_ref import Flux as ModelSamplingFlux

PIXELS = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


class TinyProcessor:
    """Qwen2VLProcessor.__call__ for text with one image each, as the edit pipeline calls it."""

    def __init__(self, tokenizer):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.tokenizer, self.image_processor = tokenizer, Qwen2VLImageProcessorPil(**PIXELS)

    def __call__(self, text, images, padding=True, return_tensors="pt"):
        image_inputs = self.image_processor(images=images, return_tensors="pt")
        grid = image_inputs["image_grid_thw"]
        merge = self.image_processor.merge_size ** 2
        text, index = list(text), 0
        for i in range(len(text)):
            while "<|image_pad|>" in text[i]:
                text[i] = text[i].replace("<|image_pad|>", "<|placeholder|>" * (int(grid[index].prod()) // merge), 1)
                index += 1
            text[i] = text[i].replace("<|placeholder|>", "<|image_pad|>")
        tokens = self.tokenizer(text, padding=padding, return_tensors=return_tensors, add_special_tokens=False)
        return BatchFeature({**tokens, **image_inputs})


def system_turn_tokens(tokenizer, template):
    """Where the template's user text starts, found as ComfyUI finds it (second <|im_start|>, then "user\\n")."""
    ids = tokenizer(template.format("x"), add_special_tokens=False)["input_ids"]
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = [i for i, v in enumerate(ids) if v == im_start][1]
    return end + 1 + len(tokenizer("user\n", add_special_tokens=False)["input_ids"])


def sample(model_pipe, image, prompt, seed=1, steps=3, size=64, plus=False):
    """The edit's image ([H, W, 3] uint8) at size x size from the reference `image` (PIL; Edit Plus: a list) whose
    fitted size is size x size; `plus`: QwenImageEditPlusPipeline."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline, QwenImageEditPlusPipeline

    E = edit_plus if plus else edit
    p = model_pipe
    cls = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    pipe = cls(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False), vae=p.vae,
               text_encoder=p.text_encoder, tokenizer=p.tokenizer, processor=TinyProcessor(p.tokenizer),
               transformer=p.transformer)
    pipe.set_progress_bar_config(disable=True)
    pipe.prompt_template_encode_start_idx = system_turn_tokens(p.tokenizer, pipe.prompt_template_encode)
    sigmas = Q.simple_scheduler(ModelSamplingFlux(shift=1.15), steps)[:-1].tolist()
    rows = size // 8
    noise = torch.randn((1, 16, rows, rows), generator=torch.manual_seed(seed))
    original = E.calculate_dimensions
    E.calculate_dimensions = lambda area, ratio: original(area * (size / 1024) ** 2, ratio)
    try:
        with torch.no_grad():
            packed = pipe(image=image, prompt=prompt, true_cfg_scale=1.0, sigmas=sigmas, num_inference_steps=steps,
                          height=size, width=size, latents=pipe._pack_latents(noise, 1, 16, rows, rows),
                          output_type="latent").images
            latent = pipe._unpack_latents(packed, size, size, pipe.vae_scale_factor)[:, :, 0]
            pixels = p.vae.decode(Q.process_out(p.vae, latent.float()).unsqueeze(2)).sample[:, :, 0]
    finally:
        E.calculate_dimensions = original
    unit = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0)[0]
    return (255.0 * unit).permute(1, 2, 0).numpy().astype("uint8")
