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
  without shifting, so that the pipeline's Euler steps are ComfyUI's Euler (`sample`, at CFG 1);
- true CFG (`sample_cfg`): diffusers' pipeline rescales the combined prediction to the conditional one's norm
  (comb_pred * (cond_norm / noise_norm)) and ComfyUI does not (comfy/samplers.py cfg_function: plain
  uncond + (cond - uncond) * scale; its CFGNorm node, an optional workflow patch, is not the model's), so the
  reference of CFG > 1 is ComfyUI's: the pipeline's own conditioning (encode_prompt with the image, for the prompt
  and for the negative prompt, as its CFG pass) and its reference latents (_encode_vae_image, packed after the
  image's tokens with their own img_shapes entry, the output cut to the image's tokens), sampled by the ComfyUI
  transcription of qwenimage_ref (CONST, cfg_function, k-diffusion's samplers);
- the start noise: torch.randn of the latent from one CPU generator seeded `seed` (ComfyUI's prepare_noise), packed
  by the pipeline's own _pack_latents; the output latents decoded as the other references (0..1, x255 truncated).
Imports nothing from sdcli.
"""

from __future__ import annotations

import torch
from transformers.feature_extraction_utils import BatchFeature

from tests.reference import qwenimage_ref as Q
from tests.reference.comfy_ref import CONST
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


def edit_pipeline(model_pipe, plus=False):
    """diffusers' QwenImageEditPipeline (`plus`: QwenImageEditPlusPipeline) on the tiny model's components."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline, QwenImageEditPlusPipeline

    p = model_pipe
    cls = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    pipe = cls(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False), vae=p.vae,
               text_encoder=p.text_encoder, tokenizer=p.tokenizer, processor=TinyProcessor(p.tokenizer),
               transformer=p.transformer)
    pipe.set_progress_bar_config(disable=True)
    pipe.prompt_template_encode_start_idx = system_turn_tokens(p.tokenizer, pipe.prompt_template_encode)
    return pipe


def decode(vae, latent):
    """The latent [1, 16, h, w] as a uint8 image [H, W, 3] (VAE decode, (x + 1) / 2 clamped, x255 truncated)."""
    with torch.no_grad():
        pixels = vae.decode(Q.process_out(vae, latent.float()).unsqueeze(2)).sample[:, :, 0]
    unit = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0)[0]
    return (255.0 * unit).permute(1, 2, 0).numpy().astype("uint8")


def sample(model_pipe, image, prompt, seed=1, steps=3, size=64, plus=False, true_cfg_scale=1.0, negative=None):
    """The edit's image ([H, W, 3] uint8) at size x size from the reference `image` (PIL; Edit Plus: a list) whose
    fitted size is size x size; `plus`: QwenImageEditPlusPipeline. `true_cfg_scale` > 1 with `negative` runs the
    pipeline's own CFG (with its norm rescale: not ComfyUI's, see sample_cfg)."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus

    E = edit_plus if plus else edit
    pipe = edit_pipeline(model_pipe, plus)
    sigmas = Q.simple_scheduler(ModelSamplingFlux(shift=1.15), steps)[:-1].tolist()
    rows = size // 8
    noise = torch.randn((1, 16, rows, rows), generator=torch.manual_seed(seed))
    original = E.calculate_dimensions
    E.calculate_dimensions = lambda area, ratio: original(area * (size / 1024) ** 2, ratio)
    try:
        with torch.no_grad():
            packed = pipe(image=image, prompt=prompt, negative_prompt=negative, true_cfg_scale=true_cfg_scale,
                          sigmas=sigmas, num_inference_steps=steps, height=size, width=size,
                          latents=pipe._pack_latents(noise, 1, 16, rows, rows), output_type="latent").images
            latent = pipe._unpack_latents(packed, size, size, pipe.vae_scale_factor)[:, :, 0]
    finally:
        E.calculate_dimensions = original
    return decode(model_pipe.vae, latent)


class EditModel(Q.QwenImageModel):
    """qwenimage_ref's network call with the reference latent's tokens after the image's (their own img_shapes
    entry), the output cut to the image's tokens."""

    def __init__(self, transformer, ms, reference):
        super().__init__(transformer, ms)
        self.reference = reference  # [1, 16, h, w]

    def network(self, x, timestep, context):
        b, c, h, w = x.shape
        rh, rw = self.reference.shape[-2:]

        def tokens(z):
            n, ch, zh, zw = z.shape
            return z.reshape(n, ch, zh // 2, 2, zw // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, zh * zw // 4, ch * 4)

        hidden = torch.cat([tokens(x), tokens(self.reference).expand(b, -1, -1)], dim=1)
        with torch.no_grad():
            out = self.transformer(hidden_states=hidden, encoder_hidden_states=context, timestep=timestep,
                                   img_shapes=[[(1, h // 2, w // 2), (1, rh // 2, rw // 2)]] * b,
                                   return_dict=False)[0][:, :h * w // 4]
        return out.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@torch.no_grad()
def sample_cfg(model_pipe, image, prompt, negative, cfg, seed=1, steps=3, size=64, sampler="Euler"):
    """Qwen-Image-Edit at true CFG `cfg` as ComfyUI samples it (plain CFG, no norm rescale) from the edit
    pipeline's conditioning and reference latent: the image [H, W, 3] uint8 at size x size from the reference
    `image` (PIL) whose fitted size is size x size."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit

    pipe = edit_pipeline(model_pipe)
    width, height, _ = edit.calculate_dimensions(1024 * 1024 * (size / 1024) ** 2, image.size[0] / image.size[1])
    prompt_image = pipe.image_processor.resize(image, height, width)
    pixels = pipe.image_processor.preprocess(prompt_image, height, width).unsqueeze(2)
    reference = pipe._encode_vae_image(pixels, generator=None)[:, :, 0]
    cond = pipe.encode_prompt(prompt=prompt, image=prompt_image)[0].float()
    uncond = pipe.encode_prompt(prompt=negative, image=prompt_image)[0].float()
    ms = ModelSamplingFlux(shift=1.15)
    sigmas = Q.SCHEDULERS["Simple"](ms, steps)
    noise = torch.randn((1, 16, size // 8, size // 8), generator=torch.manual_seed(seed))
    x = CONST().noise_scaling(sigmas[0], noise, torch.zeros_like(noise))
    guider = Q.CFGGuider(EditModel(model_pipe.transformer, ms, reference), cond, uncond, cfg)
    return decode(model_pipe.vae, Q.SAMPLERS[sampler](guider, x, sigmas, extra_args={}))
