"""What the UNet families (SD 1.x, 2.x, XL) share: a diffusers UNet2DConditionModel as the network,
its sample size for the native image size. Imported without torch; torch-side code is imported when
a method runs."""

from __future__ import annotations

from typing import Any

from sdcli.families.base import Family


class UNetFamily(Family):
    """A family whose pipelines carry their denoising network as `pipe.unet`."""

    network_component = "unet"

    def native_size_of(self, pipe: Any) -> int:
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
