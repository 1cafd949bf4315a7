"""Qwen-Image as a family: detection, the network adapter against diffusers' own call, the prompt encoder against
diffusers' _get_qwen_prompt_embeds, the Wan21 latent normalisation, ComfyUI's sigma table, refusals."""

from __future__ import annotations

import pytest
import torch

from sdcli.errors import UsageError
from sdcli.families import FAMILIES, detect_folder, detect_single_file
from sdcli.families.flux import FLUX_SCHNELL
from sdcli.families.qwenimage import QWEN_IMAGE


def test_folder_and_single_files_are_detected(tiny_qwenimage):
    found = detect_folder(tiny_qwenimage)
    assert found.family is QWEN_IMAGE and found.in_channels == 16 and FAMILIES["qwen-image"] is QWEN_IMAGE
    shapes = {"model.diffusion_model.img_in.weight": [3072, 64], "model.diffusion_model.txt_norm.weight": [3584],
              "model.diffusion_model.transformer_blocks.0.img_mod.1.weight": [18432, 3072]}
    assert detect_single_file(shapes).family is QWEN_IMAGE and detect_single_file(shapes).in_channels == 16
    # A Flux.1 file (img_in.weight too, no txt_norm) is still Flux.
    assert not QWEN_IMAGE.detect({"img_in.weight": [3072, 64], "double_blocks.0.img_mod.lin.weight": [1, 1]})
    assert detect_single_file({"img_in.weight": [3072, 64]}).family is FLUX_SCHNELL


def test_adapter_is_the_pipelines_call(tiny_qwenimage_pipe):
    """Packed 2x2 tokens, img_shapes (1, h/2, w/2), timestep = sigma (the pipeline passes t / 1000)."""
    from sdcli.conditioning.cond import Conditioning

    pipe = tiny_qwenimage_pipe.pipe
    x, sigma, text = torch.randn(2, 16, 4, 6), torch.tensor([0.7, 0.3]), torch.randn(2, 5, 32)
    ours = tiny_qwenimage_pipe.network(x, sigma, Conditioning(text))
    tokens = pipe._pack_latents(x, 2, 16, 4, 6)
    with torch.no_grad():
        out = pipe.transformer(hidden_states=tokens, encoder_hidden_states=text, timestep=sigma * 1000 / 1000,
                               img_shapes=[[(1, 2, 3)]] * 2, return_dict=False)[0]
    theirs = pipe._unpack_latents(out, 32, 48, 8)[:, :, 0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(tiny_qwenimage_pipe.network(x, sigma.flip(0), Conditioning(text)), theirs, atol=1e-4)
    assert tiny_qwenimage_pipe.network(torch.randn(1, 16, 5, 3), sigma[:1], Conditioning(text[:1])).shape \
        == (1, 16, 5, 3)


def test_prompt_encoder_is_diffusers_with_the_prefix_dropped(tiny_qwenimage_pipe):
    """diffusers' template and drop (its 34 is the real tokenizer's prefix length; the tiny one's is counted)."""
    pipe = tiny_qwenimage_pipe.pipe
    encoder = QWEN_IMAGE.prompt_encoder(pipe, 1, "original", (64, 64))
    pipe.prompt_template_encode_start_idx = encoder.drop
    theirs, _ = pipe._get_qwen_prompt_embeds("a cat, photo", device=torch.device("cpu"))
    ours = encoder.encode("a cat, photo").crossattn
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(encoder.encode("a dog, photo").crossattn, theirs, atol=1e-3)
    caption = pipe.tokenizer.convert_ids_to_tokens(encoder.token_ids("ab")[encoder.drop:])
    assert caption == [*"ab", "<|im_end|>", "\n", "<|im_start|>", *"assistant\n"]
    with pytest.raises(UsageError, match=r"prompt: Qwen-Image takes no emphasis weights .*'cat' weighted"):
        encoder.encode("a (cat:1.3)")


def test_latents_are_wan21_normalised_single_frames(tiny_qwenimage_pipe):
    """(z - mean_c) / std_c on the VAE's one-frame latents, as QwenImagePipeline decodes them."""
    vae = tiny_qwenimage_pipe.pipe.vae
    fmt, z = QWEN_IMAGE.latent, torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    latent = fmt.from_vae(vae, z)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    # the pipeline's (float order differs: an absolute bound, as values near 0 have no meaningful relative one)
    assert torch.allclose(fmt.to_vae(vae, latent), latent.unsqueeze(2) / std + mean, atol=1e-6)
    assert torch.allclose(fmt.to_vae(vae, latent), z, atol=1e-6)
    assert not torch.allclose(latent, z[:, :, 0], atol=1e-2)
    assert fmt.vae_image(torch.zeros(1, 3, 1, 8, 8)).shape == fmt.vae_pixels(torch.zeros(1, 3, 8, 8)).shape[:2] + (8, 8)


def test_sigmas_defaults_and_refusals():
    from sdcli.request.generation import GenerationRequest
    from sdcli.sampling.samplers import sampler_row
    from tests.reference.comfy_ref import Flux

    ours = QWEN_IMAGE.parameterisation({}).table
    assert torch.allclose(ours.sigmas.float(), Flux(shift=1.15).sigmas.float(), atol=1e-7)
    assert not torch.allclose(QWEN_IMAGE.parameterisation({}, shift=3.1).table.sigmas.float(), ours.sigmas.float())
    assert dict(QWEN_IMAGE.defaults) == {"cfg_scale": 2.5, "sampler": "Euler", "schedule": "simple"}
    assert QWEN_IMAGE.gpu_dtype == "bf16" and not QWEN_IMAGE.capabilities.distilled_guidance
    with pytest.raises(UsageError, match="--clip-skip: a Qwen-Image model has no CLIP skip"):
        QWEN_IMAGE.check(GenerationRequest(prompt="a", clip_skip=2), sampler_row("Euler"))
