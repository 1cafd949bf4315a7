"""A family's latent space: channels, VAE scale, the VAE's scaling and shift, and the cheap linear preview.
Imported without torch; torch-side code is imported when a method runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LatentFormat:
    """A family's latents: what its VAE encodes an image to and its denoising network works on.

    latent = (VAE posterior mean - shift) * scaling; an image side of N pixels is N / vae_scale
    latent cells; `packing` cells a side go into one network token (Flux: 2x2; SD: 1).
    scaling/shift None: the VAE config's scaling_factor/shift_factor (a --vae keeps the model's).
    """

    channels: int = 4
    vae_scale: int = 8
    scaling: float | None = None
    shift: float | None = None
    packing: int = 1
    # A live preview's linear latent -> RGB map (one (R, G, B) row per channel, then a bias), applied to the
    # latent as the loop holds it; default: the WebUI's cheap approximation for SD 1.x/2.x. None: no preview.
    preview_rgb: tuple[tuple[float, float, float], ...] | None = (
        (0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
    preview_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def vae_channels(self) -> int:
        """The latent channels of the family's VAE (Flux.2: 32, which patchify into its 128)."""
        return self.channels

    def noise_shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(channels, rows, columns) of one image's latent at width x height pixels."""
        return self.channels, height // self.vae_scale, width // self.vae_scale

    def scaling_of(self, vae_config: Any) -> float:
        return float(vae_config.scaling_factor) if self.scaling is None else self.scaling

    def shift_of(self, vae_config: Any) -> float:
        if self.shift is not None:
            return self.shift
        return float(getattr(vae_config, "shift_factor", None) or 0.0)

    def from_vae(self, vae: Any, mean: torch.Tensor) -> torch.Tensor:
        """The VAE posterior's mean -> this family's latent: (mean - shift) * scaling."""
        scaling, shift = self.scaling_of(vae.config), self.shift_of(vae.config)
        return (mean - shift if shift else mean) * scaling

    def to_vae(self, vae: Any, latent: torch.Tensor) -> torch.Tensor:
        """from_vae()'s inverse: a latent -> what the VAE decodes."""
        z = latent / self.scaling_of(vae.config)
        shift = self.shift_of(vae.config)
        return z + shift if shift else z

    def preview(self, latent: torch.Tensor) -> torch.Tensor | None:
        """A cheap preview of the first image of a latent batch [B, C, h, w]: RGB [h, w, 3] in [-1, 1] on
        the CPU, one pixel per latent cell (None: this format has no preview map, or the latent is packed)."""
        import torch

        rgb = self.preview_rgb
        if rgb is None or latent.ndim != 4:
            return None
        latent = self.preview_cells(latent)
        if latent.shape[1] != len(rgb):
            return None
        factors = torch.tensor(rgb, dtype=torch.float32)
        first = latent[0].detach().float().cpu()
        return (torch.einsum("chw,cr->hwr", first, factors) + torch.tensor(self.preview_bias)).clamp(-1, 1)

    def preview_cells(self, latent: torch.Tensor) -> torch.Tensor:
        """The latent [B, C, h, w] as the preview map reads it (Flux.2: its 2x2 patches back to the VAE's cells)."""
        return latent

    def vae_pixels(self, pixels: Any) -> Any:
        """Pixels [B, 3, H, W] as the VAE's encode takes them (a video VAE: one frame)."""
        return pixels

    def vae_image(self, sample: Any) -> Any:
        """The VAE decode's output as pixels [B, 3, H, W]."""
        return sample
