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
    sd3 = FAMILIES["sd3"].latent.preview(torch.zeros(1, 16, 2, 2))
    assert torch.allclose(sd3[0, 0], torch.tensor([0.2394, 0.2135, 0.1925]))  # ComfyUI's SD3 bias
    qwen = FAMILIES["qwen-image"].latent.preview(torch.zeros(1, 16, 2, 2))
    assert torch.allclose(qwen[0, 0], torch.tensor([-0.1835, -0.0868, -0.3360]))  # the Wan 2.1 VAE's
    one = torch.ones(1, 16, 2, 2)
    assert torch.equal(FAMILIES["zimage"].latent.preview(one), FAMILIES["flux-dev"].latent.preview(one))  # Flux VAE
    assert torch.equal(FAMILIES["chroma"].latent.preview(one), FAMILIES["flux-dev"].latent.preview(one))


def test_flux2_previews_its_patches_unpatchified():
    latent = torch.zeros(1, 128, 2, 3)
    latent[0, 4 * 3 + 2 * 1 + 0, 0, 1] = 1.0  # VAE channel 3, patch row 1, column 0 of latent cell (0, 1)
    rgb = FAMILIES["flux2-klein"].latent.preview(latent)
    assert rgb.shape == (4, 6, 3)  # one pixel per VAE latent cell: 2x2 per network cell
    bias = torch.tensor([-0.0329, -0.0718, -0.0851])
    assert torch.allclose(rgb[1, 2], torch.tensor([0.2144, 0.3009, 0.3652]) + bias)  # channel 3's factors
    assert torch.allclose(rgb[0, 2], bias) and torch.allclose(rgb[1, 3], bias)  # nowhere else
    assert FAMILIES["flux2-klein"].latent.preview(torch.zeros(1, 30, 2, 2)) is None  # not its latent: no preview


@pytest.mark.parametrize("shape", [(1, 16, 4, 4), (1, 4, 16), (4, 4, 4)])
def test_a_latent_the_map_does_not_fit_has_no_preview(shape):
    assert FAMILIES["sd1"].latent.preview(torch.zeros(shape)) is None
