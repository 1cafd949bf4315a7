"""Independent reference of the WebUI's hires fix (processing.py StableDiffusionProcessingTxt2Img:
calculate_target_resolution and sample_hr_pass; images.resize_image; upscaler.Upscaler.upscale with
the Lanczos/Nearest upscalers; shared.latent_upscale_modes). Imports no sdcli code.

The first pass and the second (img2img given a step count) run through pipeline_ref.generate.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tests.reference.pipeline_ref import decode, generate

OPT_F = 8
LATENT_UPSCALE_MODES = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}
PIL_UPSCALERS = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}


def calculate_target_resolution(width, height, hr_scale, hr_resize_x, hr_resize_y):
    """(hr_upscale_to_x, hr_upscale_to_y, truncate_x, truncate_y)."""
    if hr_resize_x == 0 and hr_resize_y == 0:
        return int(width * hr_scale), int(height * hr_scale), 0, 0
    if hr_resize_y == 0:
        return hr_resize_x, hr_resize_x * height // width, 0, 0
    if hr_resize_x == 0:
        return hr_resize_y * width // height, hr_resize_y, 0, 0
    if width / height < hr_resize_x / hr_resize_y:
        to_x, to_y = hr_resize_x, hr_resize_x * height // width
    else:
        to_x, to_y = hr_resize_y * width // height, hr_resize_y
    return to_x, to_y, (to_x - hr_resize_x) // OPT_F, (to_y - hr_resize_y) // OPT_F


def upscaler_upscale(img, scale, name):
    """upscaler.Upscaler.upscale with UpscalerLanczos / UpscalerNearest's do_upscale."""
    dest_w = int((img.width * scale) // 8 * 8)
    dest_h = int((img.height * scale) // 8 * 8)
    for _ in range(3):
        if img.width >= dest_w and img.height >= dest_h:
            break
        shape = (img.width, img.height)
        img = img.resize((int(img.width * scale), int(img.height * scale)), resample=PIL_UPSCALERS[name])
        if shape == (img.width, img.height):
            break
    if img.width != dest_w or img.height != dest_h:
        img = img.resize((int(dest_w), int(dest_h)), resample=Image.LANCZOS)
    return img


def resize_image_just_resize(im, width, height, upscaler_name):
    """images.resize_image(0, im, width, height, upscaler_name)."""
    if upscaler_name is None or upscaler_name == "None":
        return im.resize((width, height), resample=Image.LANCZOS)
    scale = max(width / im.width, height / im.height)
    if scale > 1.0:
        im = upscaler_upscale(im, scale, upscaler_name)
    if im.width != width or im.height != height:
        im = im.resize((width, height), resample=Image.LANCZOS)
    return im


@torch.no_grad()
def generate_hires(pipe, prompt, negative="", *, hr_scale=2.0, hr_upscaler="Latent", hr_second_pass_steps=0,
                   denoising_strength=0.7, hr_resize_x=0, hr_resize_y=0, hr_prompt="", hr_negative_prompt="",
                   hr_sampler_name=None, steps=4, width=64, height=64, **settings):
    """txt2img with enable_hr, as the WebUI: first pass, upscale, img2img at the target size."""
    samples = generate(pipe, prompt, negative, steps=steps, width=width, height=height, return_latents=True,
                       **settings)
    target_width, target_height, truncate_x, truncate_y = calculate_target_resolution(
        width, height, hr_scale, hr_resize_x, hr_resize_y)
    mode = LATENT_UPSCALE_MODES.get(hr_upscaler)
    if mode is not None:
        samples = torch.nn.functional.interpolate(samples, size=(target_height // OPT_F, target_width // OPT_F),
                                                  mode=mode["mode"], antialias=mode["antialias"])
    else:
        batch_images = []
        for x_sample in decode(pipe, samples):  # uint8, as lowres_samples -> x_sample.astype(np.uint8)
            image = resize_image_just_resize(Image.fromarray(x_sample), target_width, target_height, hr_upscaler)
            batch_images.append(np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0))
        decoded = torch.from_numpy(np.array(batch_images))
        samples = pipe.vae.encode(2.0 * decoded - 1.0).latent_dist.mean * pipe.vae.config.scaling_factor
    samples = samples[:, :, truncate_y // 2:samples.shape[2] - (truncate_y + 1) // 2,
                      truncate_x // 2:samples.shape[3] - (truncate_x + 1) // 2]
    second = dict(settings)
    if hr_sampler_name:
        second["sampler"] = hr_sampler_name
    # A fresh ImageRNG of the same seeds at the latents' shape; conds of the hires prompts at the target size.
    images = generate(pipe, hr_prompt or prompt, hr_negative_prompt or negative, steps=steps,
                      width=samples.shape[3] * OPT_F, height=samples.shape[2] * OPT_F, latent_input=samples,
                      hires_steps=hr_second_pass_steps or steps, denoising_strength=denoising_strength, **second)
    return images
