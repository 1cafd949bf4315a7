"""Latents <-> images through the model's VAE, as the WebUI encodes and decodes them (one image at a time),
in the family's latent format (families.base.LatentFormat: scaling and shift)."""

from __future__ import annotations

from typing import Any

from sdcli.models.loaded import LoadedModel
from sdcli.models.module_state import module_device, module_dtype


def to_pil(unit: Any) -> list[Any]:
    """[B, 3, H, W] pixels in [0, 1] -> 8-bit images, truncating as the WebUI does (not rounding)."""
    import numpy as np
    from PIL import Image

    pixels = (255.0 * unit.float()).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p.astype(np.uint8)) for p in pixels]


def decode(model: LoadedModel, latents: Any) -> list[Any]:
    """Latents -> images, one at a time (batch-independent pixels), as the WebUI decodes."""
    import torch

    vae, fmt = model.pipe.vae, model.family.latent
    # A guarded VAE (models.vae.guard_decode) casts for itself and redoes a NaN decode in fp32 from
    # these fp32 latents, as the WebUI does; an unguarded one gets its own dtype.
    cast = (lambda z: z) if model.addons.guard.covers(vae) else (lambda z: z.to(module_dtype(vae)))

    with torch.no_grad():
        out = [fmt.vae_image(vae.decode(cast(fmt.to_vae(vae, lat[None])), return_dict=False)[0])
               for lat in latents]
    return to_pil(((torch.cat(out).float() + 1.0) / 2.0).clamp(0, 1))


def encode_pixels(model: LoadedModel, pixels: Any) -> Any:
    """[B, 3, H, W] pixels in [-1, 1] -> latents (the VAE posterior's mean) in the VAE's dtype."""
    import torch

    vae, fmt = model.pipe.vae, model.family.latent
    with torch.no_grad():
        mean = vae.encode(fmt.vae_pixels(pixels.to(module_device(vae), module_dtype(vae)))).latent_dist.mean
    return fmt.from_vae(vae, mean)


def encode_image(model: LoadedModel, image: Any, n: int) -> Any:
    """An input image -> its latent (the VAE posterior's mean), repeated n times."""
    import numpy as np
    import torch

    unit = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    latent = encode_pixels(model, torch.from_numpy(2.0 * unit - 1.0).permute(2, 0, 1)[None])
    return latent.float().repeat(n, 1, 1, 1)

