"""An independent reference of Flux.1 Kontext editing, for the parity tests: Forge's Flux.1 sampling path
(forge_flux_ref, which sdcli's Flux.1 sampling matches) with the network call extended by ComfyUI's reference
latents.

Facts transcribed from comfyanonymous/ComfyUI (master, 2026):
- comfy_extras/nodes_edit_model.py ReferenceLatent: the VAE-encoded reference image is attached to the
  conditioning; comfy/model_base.py Flux.extra_conds passes it through process_latent_in (Flux: (z - 0.1159) *
  0.3611) as `ref_latents`.
- comfy/ldm/flux/model.py Flux._forward with ref_latents, method "offset" (Flux.1's default): the image tokens
  first; then each reference packed 2x2 (c ph pw) with ids (1, row + h_offset, col + w_offset), the offsets
  (in latent cells, rounded to patches: (off + 1) // 2) placing reference k beside the earlier ones on the side
  that keeps the arrangement squarer (ref_h + h > ref_w + w: to the right at w, else below at h; h, w grow to
  the bounding box); the network's output is cut to the image's own tokens before unpacking.
- comfy_extras/nodes_flux.py FluxKontextImageScale: the PREFERED_KONTEXT_RESOLUTIONS entry whose w / h is
  nearest the image's aspect ratio (first minimum), then a Lanczos resize with a centre crop.
The references are given to every conditioning (positive and negative), as diffusers' FluxKontextPipeline runs
its true-CFG pass with the image latents too. Imports nothing from sdcli.
"""

from __future__ import annotations

import torch
from einops import rearrange

from tests.reference import forge_flux_ref as F
from tests.reference import forge_flux_text_ref as T

REF_INDEX = 1  # the first position id of every reference token ("offset" method)
PREFERED_KONTEXT_RESOLUTIONS = [
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
]


def kontext_image_scale(width, height):
    """FluxKontextImageScale's target (width, height) for an image of this size."""
    aspect = width / height
    _, w, h = min((abs(aspect - w / h), w, h) for w, h in PREFERED_KONTEXT_RESOLUTIONS)
    return w, h


def kontext_image_scale_pixels(image01):
    """FluxKontextImageScale's output for a [1, H, W, 3] image in 0..1 (ComfyUI's IMAGE): common_upscale with
    "lanczos" and "center": x = round((W - W * (new_aspect / aspect)) / 2) columns off each side when wider
    than the target (rows likewise when taller), then comfy.utils.lanczos (each image through uint8
    clip(255 x), PIL LANCZOS, / 255)."""
    import numpy as np
    from PIL import Image

    _, height, width, _ = image01.shape
    new_width, new_height = kontext_image_scale(width, height)
    aspect, new_aspect = width / height, new_width / new_height
    x = y = 0
    if aspect > new_aspect:
        x = round((width - width * (new_aspect / aspect)) / 2)
    elif aspect < new_aspect:
        y = round((height - height * (aspect / new_aspect)) / 2)
    cropped = image01[:, y:height - y, x:width - x, :]
    pil = Image.fromarray(np.clip(255.0 * cropped[0].numpy(), 0, 255).astype(np.uint8))
    resized = pil.resize((new_width, new_height), resample=Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(resized).astype(np.float32) / 255.0)[None]


def encode_reference(vae, image01):
    """VAEEncode (the posterior's mean) + process_latent_in of a [1, 3, H, W] image in 0..1."""
    with torch.no_grad():
        return T.process_in(vae.encode(2.0 * image01 - 1.0).latent_dist.mean)


def _ids(h_len, w_len, index, h_offset, w_offset, dtype):
    ids = torch.zeros((h_len, w_len, 3), dtype=dtype)
    ids[..., 0] = ids[..., 0] + index
    ids[..., 1] = ids[..., 1] + torch.linspace(h_offset, h_len - 1 + h_offset, steps=h_len, dtype=dtype)[:, None]
    ids[..., 2] = ids[..., 2] + torch.linspace(w_offset, w_len - 1 + w_offset, steps=w_len, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)


class KontextModel(F.FluxModel):
    """forge_flux_ref.FluxModel whose forward appends the reference tokens as ComfyUI's Flux._forward does."""

    refs: list = []

    def forward(self, x, timestep, context, y, guidance=None):
        _, _, h, w = x.shape
        x = torch.nn.functional.pad(x, (0, (2 - w % 2) % 2, 0, (2 - h % 2) % 2), mode="circular")
        img = rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
        h_len, w_len = (h + 1) // 2, (w + 1) // 2
        img_ids = _ids(h_len, w_len, 0, 0, 0, x.dtype)
        tokens, n_img = [img], img.shape[1]
        ids = [img_ids]
        bound_h = bound_w = 0
        for ref in self.refs:
            ref = ref.to(x.dtype).repeat(x.shape[0], 1, 1, 1)
            h_offset = w_offset = 0
            if ref.shape[-2] + bound_h > ref.shape[-1] + bound_w:
                w_offset = bound_w
            else:
                h_offset = bound_h
            bound_h = max(bound_h, ref.shape[-2] + h_offset)
            bound_w = max(bound_w, ref.shape[-1] + w_offset)
            rh, rw = (ref.shape[-2] + 1) // 2, (ref.shape[-1] + 1) // 2
            tokens.append(rearrange(ref, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2))
            ids.append(_ids(rh, rw, REF_INDEX, (h_offset + 1) // 2, (w_offset + 1) // 2, x.dtype))
        txt_ids = torch.zeros((context.shape[1], 3), dtype=x.dtype)
        out = self.transformer(hidden_states=torch.cat(tokens, dim=1), encoder_hidden_states=context,
                               pooled_projections=y, timestep=timestep, img_ids=torch.cat(ids), txt_ids=txt_ids,
                               guidance=guidance if self.transformer.config.guidance_embeds else None,
                               return_dict=False)[0][:, :n_img]
        return rearrange(out, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h_len, w=w_len, ph=2, pw=2)[:, :, :h, :w]


def sample_kontext(refs, *args, **kwargs):
    """forge_flux_ref.sample_flux with KontextModel as its network wrapper, seeing the reference latents `refs`."""
    original = F.FluxModel

    class WithRefs(KontextModel):
        pass

    WithRefs.refs = list(refs)
    F.FluxModel = WithRefs
    try:
        return F.sample_flux(*args, **kwargs)
    finally:
        F.FluxModel = original
