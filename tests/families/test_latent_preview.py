"""The live preview's cheap latent -> RGB decode (LatentFormat.preview): each family's own linear map."""

from __future__ import annotations

import pytest
import torch

from sdcli.families import FAMILIES


def test_sd1_uses_the_webui_cheap_approximation():
    latent = torch.zeros(2, 4, 3, 5)
    latent[0, 0] = 1.0  # channel 0 only, first image
    latent[0, 3, 1, 2] = 2.0
    rgb = FAMILIES["sd1"].latent.preview(latent)
    assert rgb.shape == (3, 5, 3)  # one pixel per latent cell, first image only
    assert torch.allclose(rgb[0, 0], torch.tensor([0.298, 0.207, 0.208]))
    assert torch.allclose(rgb[1, 2], torch.tensor([0.298 - 0.368, 0.207 - 0.542, 0.208 - 0.946]).clamp(-1, 1))


def test_each_family_maps_with_its_own_factors_and_bias():
    zero = FAMILIES["sdxl"].latent.preview(torch.zeros(1, 4, 2, 2))
    assert torch.allclose(zero[0, 0], torch.tensor([0.1084, -0.0175, -0.0011]))  # SDXL's bias, not SD's zero
    assert FAMILIES["sdxl-refiner"].latent.preview_rgb == FAMILIES["sdxl"].latent.preview_rgb
    assert FAMILIES["sdxl"].latent.preview_rgb != FAMILIES["sd1"].latent.preview_rgb
    flux = FAMILIES["flux-dev"].latent.preview(torch.ones(1, 16, 2, 2))
    assert flux.shape == (2, 2, 3) and torch.allclose(flux[0, 0], torch.tensor([-0.0821, 0.0582, 0.0904]), atol=1e-4)
    assert FAMILIES["sd3"].latent.preview(torch.ones(1, 16, 2, 2)) is None  # no map for its VAE: no preview


@pytest.mark.parametrize("shape", [(1, 16, 4, 4), (1, 4, 16), (4, 4, 4)])
def test_a_latent_the_map_does_not_fit_has_no_preview(shape):
    assert FAMILIES["sd1"].latent.preview(torch.zeros(shape)) is None
