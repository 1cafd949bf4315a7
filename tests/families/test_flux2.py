"""Flux.2 (klein, dev) as a family: detection, the prompt encoders against diffusers' encode_prompt, the network
adapter against Flux2KleinPipeline's / Flux2Pipeline's transformer call, the latent format against the pipeline's
VAE encode/decode, the Flux2 schedule as Flux.2's own."""

from __future__ import annotations

import json

import pytest
import torch

from sdcli.errors import UsageError
from sdcli.families import FAMILIES, detect_folder, detect_single_file
from sdcli.families.flux2 import FLUX2_KLEIN, FLUX2_KLEIN_BASE
from sdcli.families.flux2_dev import FLUX2_DEV


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
    mistral = ["transformers", "Mistral3ForConditionalGeneration"]
    dev = {**index, "_class_name": "Flux2Pipeline", "text_encoder": mistral}
    (tmp_path / "model_index.json").write_text(json.dumps(dev))
    assert detect_folder(tmp_path).family is FLUX2_DEV and FLUX2_DEV.pipelines["txt2img"] == "Flux2Pipeline"
    for mark in ("single_stream_modulation.lin.weight", "single_stream_modulation.linear.weight"):  # BFL, diffusers
        found = detect_single_file({f"model.diffusion_model.{mark}": [1, 1],
                                    "model.diffusion_model.img_in.weight": [3072, 128]})
        assert found.family is FLUX2_KLEIN and found.in_channels == 128
    for guidance in ("guidance_in.in_layer.weight", "time_guidance_embed.guidance_embedder.linear_1.weight"):
        found = detect_single_file({"single_stream_modulation.lin.weight": [1, 1], guidance: [6144, 256],
                                    "img_in.weight": [6144, 128]})
        assert found.family is FLUX2_DEV and found.in_channels == 128


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


@pytest.fixture(scope="module")
def dev(tiny_flux2_dev):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_flux2_dev)


def test_dev_is_detected_and_its_prompt_encoder_is_diffusers_encode_prompt(dev, tiny_flux2_dev):
    assert detect_folder(tiny_flux2_dev).family is FLUX2_DEV and dev.family is FLUX2_DEV
    pipe = dev.pipe
    encoder = FLUX2_DEV.prompt_encoder(pipe, 1, "original", (32, 32), 2.5)
    cond = encoder.encode("a red \\[IMG\\]cat")  # escaped WebUI brackets: "[IMG]", which the pipeline drops
    theirs, _ = pipe.encode_prompt("a red [IMG]cat", device="cpu")
    assert cond.crossattn.shape == (1, 512, 96) and torch.equal(cond.crossattn, theirs)
    assert cond.extra["guidance"].tolist() == [2.5]
    assert FLUX2_DEV.prompt_encoder(pipe, 1, "original", (32, 32)).encode("a").extra["guidance"].tolist() == [4.0]
    assert not torch.equal(cond.crossattn, encoder.encode("a red dog").crossattn)
    with pytest.raises(UsageError, match="Flux.2 takes no emphasis weights"):
        encoder.encode("a (red:1.3) cat")


def test_dev_adapter_is_the_pipeline_call_with_guidance(dev):
    from sdcli.conditioning.cond import Conditioning

    pipe = dev.pipe
    x, sigma, text = torch.randn(2, 128, 3, 5), torch.tensor([0.7, 0.3]), torch.randn(2, 7, 96)
    guidance = torch.tensor([3.0])
    ours = dev.network(x, sigma, Conditioning(text, {"guidance": guidance}))
    with torch.no_grad():
        out = pipe.transformer(hidden_states=pipe._pack_latents(x), timestep=sigma, guidance=guidance.expand(2),
                               encoder_hidden_states=text, txt_ids=pipe._prepare_text_ids(text),
                               img_ids=pipe._prepare_latent_ids(x), return_dict=False)[0]
    theirs = pipe._unpack_latents_with_ids(out, pipe._prepare_latent_ids(x))
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(ours, dev.network(x, sigma, Conditioning(text, {"guidance": guidance * 2})), atol=1e-3)


def test_the_flux2_schedule_is_flux2s_own():
    from sdcli.families import FAMILIES
    from sdcli.sampling.samplers import resolve_sampler

    choice = resolve_sampler("Euler", "flux2")
    for family in (FLUX2_KLEIN, FLUX2_KLEIN_BASE, FLUX2_DEV):
        family.check_choice(choice)
        assert family.defaults["schedule"] == "flux2"
        assert family.settle_choice(resolve_sampler("Euler")).schedule == "flux2"
    assert FLUX2_DEV.settle_choice(resolve_sampler("DPM++ 2M")).schedule == "karras"  # the sampler's own fits
    for name in ("sd1", "sdxl", "flux-dev", "zimage"):
        with pytest.raises(UsageError, match="--schedule: Flux2 is a schedule of its own model family's"):
            FAMILIES[name].check_choice(choice)
    assert resolve_sampler("DDIM", "flux2").written_label == "Flux2"  # a timestep sampler ignores it, as any type
