"""Replayed ComfyUI Flux.1 and SD3 graphs vs independent transcriptions of ComfyUI's side (comfy_flow_ref,
comfy_text_ref), on the tiny models: the graph written as ComfyUI's SaveImage writes it (tests/io/tool_images.py),
read and planned by sdcli's replay (--rng comfy, --emphasis comfy, the node's shift) and run through its job."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.io.tool_images import comfy_flux_api, comfy_png, comfy_sd3_api
from tests.reference import comfy_flow_ref, comfy_text_ref
from tests.reference.forge_flux_text_ref import decode_first_stage
from tests.reference.test_comfy_parity import replayed

pytestmark = [pytest.mark.parity]
FLUX = {"seed": 5, "steps": 3, "guidance": 3.5, "width": 32, "height": 32}


def flux_reference(pipe, prompt, shift, **settings):
    latent = comfy_flow_ref.flux_graph(pipe, prompt, shift=shift, **settings)
    with torch.no_grad():
        unit = decode_first_stage(pipe.vae, latent)
    return (255.0 * unit[0]).permute(1, 2, 0).numpy().astype(np.uint8)


def most(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("prompt", ["a red cat on a hill", "a (red:1.4) cat, (hill:0.6) [photo]"])
def test_replayed_comfyui_flux_graph_gives_comfyuis_pixels(tiny_family_pipe, tmp_path, prompt, single_thread):
    """ModelSamplingFlux at the graph's 32x32 shifts Flux's sigmas by mu 0.457 (not Forge's fixed 1.15): 0 levels;
    the same graph with Flux's own mu (the Forge way) is far off."""
    model = tiny_family_pipe("flux-dev")
    image = comfy_png(tmp_path / "f.png", comfy_flux_api(prompt=prompt, **FLUX))
    shift = comfy_flow_ref.model_sampling_flux_shift(1.15, 0.5, 32, 32)
    theirs = flux_reference(model.pipe, prompt, shift, **FLUX)
    ours = replayed(model, image)[0]
    print(f"max difference {most(ours, theirs)}: {prompt!r}")
    assert most(ours, theirs) == 0
    forge_mu = replayed(model, image, shift=1.15)[0]
    print(f"max difference with mu 1.15 {most(forge_mu, theirs)}")
    assert most(forge_mu, theirs) > 5


def test_replayed_comfyui_flux_graph_with_euler_ancestral(tiny_family_pipe, tmp_path, single_thread):
    """Euler a's fresh noise as ComfyUI draws it (one CPU generator seeded seed + 1): 0 levels; the WebUI's
    (--rng cpu: the image's own generator going on) is far off."""
    model = tiny_family_pipe("flux-dev")
    image = comfy_png(tmp_path / "f.png", comfy_flux_api(sampler="euler_ancestral", **FLUX))
    shift = comfy_flow_ref.model_sampling_flux_shift(1.15, 0.5, 32, 32)
    latent = comfy_flow_ref.flux_graph(model.pipe, "a red cat", shift=shift, sampler="euler_ancestral", **FLUX)
    with torch.no_grad():
        theirs = (255.0 * decode_first_stage(model.pipe.vae, latent)[0]).permute(1, 2, 0).numpy().astype(np.uint8)
    ours = replayed(model, image)[0]
    print(f"max difference {most(ours, theirs)}: euler_ancestral")
    assert most(ours, theirs) == 0
    webui_noise = replayed(model, image, rng="cpu")[0]
    print(f"max difference with --rng cpu {most(webui_noise, theirs)}")
    assert most(webui_noise, theirs) > 5


def test_comfyui_t5_weighting(tiny_family_pipe):
    """T5's states of a weighted prompt as ComfyUI's T5XXLModel gives them (--emphasis comfy); Forge's differ."""
    from sdcli.conditioning.flux import T5TextEncoder

    pipe = tiny_family_pipe("flux-dev").pipe
    text = "a (red:1.4) cat, (hill:0.6) [photo]"
    theirs = comfy_text_ref.t5_encode(pipe.tokenizer_2, pipe.text_encoder_2, text)
    ours = T5TextEncoder(pipe.tokenizer_2, pipe.text_encoder_2, "comfy")(text)
    assert ours.shape == theirs.shape and float((ours - theirs).abs().max()) < 1e-5
    forge = T5TextEncoder(pipe.tokenizer_2, pipe.text_encoder_2, "original")(text)
    assert float((forge - theirs).abs().max()) > 0.01


SD3 = {"seed": 7, "steps": 3, "cfg": 4.5, "width": 32, "height": 32}
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609  # SD3's latent format (process_out: latent / scale + shift)


def sd3_reference(pipe, prompt, negative, seed, steps, cfg, width, height, encode=None):
    """ComfyUI's SD3 KSampler graph: sd3_ref's sampling with ComfyUI's text path (comfy_text_ref.sd3_text_encode)."""
    from tests.reference import sd3_ref as R

    encode = encode or comfy_text_ref.sd3_text_encode
    with torch.no_grad():
        cond, uncond = encode(pipe, prompt), encode(pipe, negative)
        noise = torch.randn((1, 16, height // 8, width // 8), generator=torch.manual_seed(seed))
        sigmas = R.SCHEDULES["Simple"](steps)
        latent = R.sample_euler(R.make_model(pipe.transformer, cond, uncond, cfg), sigmas[0] * noise, sigmas)
        image = pipe.vae.decode(latent / SD3_SCALE + SD3_SHIFT).sample
    return (255.0 * ((image[0] + 1.0) / 2.0).clamp(0, 1)).permute(1, 2, 0).numpy().astype(np.uint8)


@pytest.mark.parametrize("prompt,negative", [("a red cat on a hill", ""), ("a (red:1.4) cat, (hill:0.6)", "dog")])
def test_replayed_comfyui_sd3_graph_gives_comfyuis_pixels(tiny_family_pipe, tmp_path, prompt, negative,
                                                          single_thread):
    """ComfyUI's SD3 text path (layer -2, unprojected CLIP-L pooled, T5 to 77 tokens, weights from the empty
    prompt, an empty negative encoded): 0 levels; Forge's text path (sdcli's --emphasis original) is far off."""
    from tests.reference import sd3_ref as R

    model = tiny_family_pipe("sd3")
    image = comfy_png(tmp_path / "s.png", comfy_sd3_api(prompt=prompt, negative=negative, **SD3))
    theirs = sd3_reference(model.pipe, prompt, negative, **SD3)
    ours = replayed(model, image)[0]
    print(f"max difference {most(ours, theirs)}: {prompt!r}")
    assert most(ours, theirs) == 0
    forge_way = replayed(model, image, emphasis="original")[0]
    print(f"max difference with Forge's text path {most(forge_way, theirs)}")
    assert most(forge_way, theirs) > 5
    if "(" not in prompt:  # the only difference is the text path: with Forge's (sd3_ref, no weights) it is Forge's
        forge_ref = sd3_reference(model.pipe, prompt, negative, **SD3,
                                  encode=lambda p, t: R.conditioning(p, t, negative=t == ""))
        assert most(forge_way, forge_ref) == 0
