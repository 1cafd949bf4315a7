"""An independent reference of ComfyUI's Flux.2 klein edit template (image_flux2_klein_image_edit_4b_distilled):
LoadImage -> ImageScaleToTotalPixels -> VAEEncode -> ReferenceLatent on both conditionings, GetImageSize of the
scaled image sizing EmptyFlux2LatentImage and Flux2Scheduler, SamplerCustomAdvanced; sampled by flux2_ref's
ComfyUI transcription (its "index" reference placement, Flux.2's ref_index_scale 10).

Facts transcribed from comfyanonymous/ComfyUI (master, 2026):
- comfy_extras/nodes_post_processing.py ImageScaleToTotalPixels(upscale_method, megapixels, resolution_steps):
  scale_by = sqrt(megapixels * 1024 * 1024 / (W * H)); each side round(side * scale_by / steps) * steps;
  comfy.utils.common_upscale(..., method, "disabled").
- comfy/utils.py common_upscale: "lanczos": each image through Pillow (uint8 of clip(255 x), truncated; LANCZOS;
  / 255); "bislerp" its own; any other method torch's F.interpolate(mode=method) (align_corners unset, no
  antialiasing).
- comfy_extras/nodes_edit_model.py ReferenceLatent: the latent appended to the conditioning's reference_latents.
- GetImageSize: the scaled image's width and height; EmptyFlux2LatentImage: zeros [1, 128, H // 16, W // 16];
  Flux2Scheduler(steps, W, H): flux2_ref.flux2_scheduler (seq_len = round(W * H / 256) of those exact pixels).
- comfy/sd.py VAE.encode: vae_encode_crop_pixels first, each side cut to a whole multiple of the VAE's
  downscale_ratio (Flux.2's VAE, with its batch-norm latent "bn.running_mean": 8 x 2 = 16) about the centre,
  (side % 16) // 2 off the start.
Imports nothing from sdcli.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.reference import flux2_ref as F2
from tests.reference.qwenimage_edit_comfy_ref import load_image


def common_upscale(image, width, height, method):
    """[B, H, W, C] in 0..1 -> [B, height, width, C] by common_upscale(..., "disabled")."""
    from PIL import Image

    samples = image.movedim(-1, 1)
    if method == "lanczos":
        out = []
        for one in samples:
            pil = Image.fromarray(np.clip(255.0 * one.movedim(0, -1).numpy(), 0, 255).astype(np.uint8))
            resized = pil.resize((width, height), resample=Image.Resampling.LANCZOS)
            out.append(torch.from_numpy(np.array(resized).astype(np.float32) / 255.0).movedim(-1, 0))
        samples = torch.stack(out)
    else:
        samples = torch.nn.functional.interpolate(samples, size=(height, width), mode=method)
    return samples.movedim(1, -1)


def scale_to_total_pixels(image, method, megapixels, steps, area_scale=1.0):
    """ImageScaleToTotalPixels of [1, H, W, 3]; `area_scale` scales its pixel count (a tiny model: smaller)."""
    total = megapixels * 1024 * 1024 * area_scale
    scale_by = math.sqrt(total / (image.shape[2] * image.shape[1]))
    width = round(image.shape[2] * scale_by / steps) * steps
    height = round(image.shape[1] * scale_by / steps) * steps
    return common_upscale(image, int(width), int(height), method)


def crop_to_cells(image, cell=16):
    """VAE.encode's crop of [B, H, W, C]: each side cut to whole `cell`s, (side % cell) // 2 off the start."""
    for dim in (1, 2):
        whole = image.shape[dim] // cell * cell
        if whole != image.shape[dim]:
            image = image.narrow(dim, (image.shape[dim] % cell) // 2, whole)
    return image


def sample(pipe, paths, prompt, method="nearest-exact", megapixels=1.0, steps_px=1, area_scale=1.0, seed=1, steps=4,
           cfg=1.0, size=None, guidance=None, encoder=F2.encode):
    """The klein template at the first scaled image's size (GetImageSize of it sizing the latent and the
    scheduler): one uint8 image [H, W, 3]. Flux.2 dev's template (image_flux2): `size` (W, H), the
    EmptyFlux2LatentImage's and Flux2Scheduler's own, `guidance` its FluxGuidance, `encoder` flux2_dev's."""
    scaled = [scale_to_total_pixels(load_image(p), method, megapixels, steps_px, area_scale) for p in paths]
    with torch.no_grad():
        refs = [F2.process_in(pipe.vae, pipe.vae.encode(2.0 * crop_to_cells(im).movedim(-1, 1) - 1.0).latent_dist.mean)
                for im in scaled]
    width, height = size or (scaled[0].shape[2], scaled[0].shape[1])
    out = F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, "", seed, width, height, steps,
                    "Euler", "Flux2", cfg, 2.02, refs=refs, guidance=guidance, encoder=encoder)
    return F2.decode(pipe.vae, out)[0]
