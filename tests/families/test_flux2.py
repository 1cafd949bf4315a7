"""Flux.2 klein as a family: detection, the prompt encoder against diffusers' encode_prompt, the network adapter
against Flux2KleinPipeline's transformer call, the latent format against the pipeline's VAE encode/decode."""

from __future__ import annotations

import json

import pytest
import torch

from sdcli.errors import UsageError
from sdcli.families import FAMILIES, detect_folder, detect_single_file
from sdcli.families.flux2 import FLUX2_DEV, FLUX2_KLEIN, FLUX2_KLEIN_BASE


@pytest.fixture(scope="module")
def klein(tiny_flux2):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_flux2)


def test_folders_and_single_files_are_detected(tiny_flux2, tmp_path):
    found = detect_folder(tiny_flux2)
    assert found.family is FLUX2_KLEIN and found.in_channels == 128 and FAMILIES["flux2-klein"] is FLUX2_KLEIN
    index = json.loads((tiny_flux2 / "model_index.json").read_text())
    for name, distilled, family in (("Flux2KleinPipeline", False, FLUX2_KLEIN_BASE), ("Flux2Pipeline", False,
                                                                                     FLUX2_DEV)):
        folder = tmp_path / name / str(distilled)
        folder.mkdir(parents=True)
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": name, "is_distilled": distilled}))
        assert detect_folder(folder).family is family
    assert FLUX2_KLEIN_BASE.defaults["cfg_scale"] == 4.0 and FLUX2_KLEIN.defaults["cfg_scale"] == 1.0
    assert FLUX2_DEV.pipelines == {}  # refused in every mode (models.loaded / families.pipeline_class)
    for mark in ("single_stream_modulation.lin.weight", "single_stream_modulation.linear.weight"):  # BFL, diffusers
        found = detect_single_file({f"model.diffusion_model.{mark}": [1, 1],
                                    "model.diffusion_model.img_in.weight": [3072, 128]})
        assert found.family is FLUX2_KLEIN and found.in_channels == 128


def test_prompt_encoder_is_diffusers_encode_prompt(klein):
    pipe = klein.pipe
    encoder = FLUX2_KLEIN.prompt_encoder(pipe, 1, "original", (32, 32))
    ours = encoder.encode("a red cat").crossattn
    theirs, _ = pipe.encode_prompt("a red cat", device="cpu")
    assert ours.shape == (1, 512, 96) and torch.equal(ours, theirs)
    assert not torch.equal(ours, encoder.encode("a red dog").crossattn)
    assert torch.equal(encoder.encode("a \\(red\\) cat").crossattn, pipe.encode_prompt("a (red) cat")[0])
    with pytest.raises(UsageError, match="Flux.2 takes no emphasis weights"):
        encoder.encode("a (red:1.3) cat")


def test_adapter_is_the_pipeline_call(klein):
    from sdcli.conditioning.cond import Conditioning

    pipe = klein.pipe
    x, sigma, text = torch.randn(2, 128, 3, 5), torch.tensor([0.7, 0.3]), torch.randn(2, 7, 96)
    ours = klein.network(x, sigma, Conditioning(text))
    tokens = pipe._pack_latents(x)
    with torch.no_grad():
        out = pipe.transformer(hidden_states=tokens, timestep=sigma * 1000 / 1000, guidance=None,
                               encoder_hidden_states=text, txt_ids=pipe._prepare_text_ids(text),
                               img_ids=pipe._prepare_latent_ids(x), return_dict=False)[0]
    theirs = pipe._unpack_latents_with_ids(out, pipe._prepare_latent_ids(x), 3, 5)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(ours, klein.network(x, sigma.flip(0), Conditioning(text)), atol=1e-3)


def test_latent_format_is_the_pipelines(klein):
    """Encode: the posterior mean patchified and batch-normalised (_encode_vae_image); decode: its inverse."""
    pipe, fmt = klein.pipe, FLUX2_KLEIN.latent
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ours = fmt.from_vae(pipe.vae, pipe.vae.encode(pixels).latent_dist.mean)
        theirs = pipe._encode_vae_image(pixels, generator=None)
    assert ours.shape == (1, 128, 2, 2) and torch.allclose(ours, theirs, atol=1e-6)
    mean = pipe.vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    assert torch.allclose(fmt.to_vae(pipe.vae, ours), pipe._unpatchify_latents(theirs * std + mean), atol=1e-6)
    assert fmt.noise_shape(64, 32) == (128, 2, 4)


def test_parameterisation_is_comfyuis_flux2_table():
    flow = FLUX2_KLEIN.parameterisation({})
    assert flow.table.shift == 2.02 and FLUX2_KLEIN.parameterisation({}, shift=1.0).table.shift == 1.0
