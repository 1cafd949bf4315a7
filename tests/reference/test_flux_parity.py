"""Flux.1 through sdcli's job (job.generate.run) vs the Forge reference (forge_flux_ref.sample_flux), in pixels.

Both decode the same way (Forge's process_out, VAE decode, clamp, x255 truncated). The tolerance is 0 levels
everywhere, also where the arithmetic order differs (CFG above 1 with AND: sdcli sums the WebUI's way,
u + sum w (c - u) * scale, Forge as u + (sum w c / sum w - u) * scale * sum w; 0 levels on the tiny model,
though a larger one may move a pixel by 1 there). img2img: both start from the VAE posterior's mean (Forge
draws a posterior sample from its global torch RNG, which no seed fixes).
Each comparison is shown to fail on a perturbed setting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import forge_flux_ref as F
from tests.reference import forge_flux_text_ref as T
from tests.reference.flow_parity import FlowParity, init_image, unit_tensor

pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("ignore:Should have:UserWarning")]  # torchsde
PROMPT = "a (red:1.3) cat on a hill, photo"
LONG = " ".join(f"word{i}" for i in range(300))  # past 256 T5 tokens
SIZE = {"width": 32, "height": 32}


@pytest.fixture(scope="module")
def flux(tiny_flux):
    from tests.conftest import _load_on_cpu

    return {"dev": _load_on_cpu(tiny_flux["flux-dev"]), "schnell": _load_on_cpu(tiny_flux["flux-schnell"])}


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    """Forge's images from the reference on the same diffusers components."""
    pipe = model.pipe
    init_latent = None
    if init is not None:
        init_latent = T.process_in(pipe.vae.encode(2.0 * unit_tensor(init) - 1.0).latent_dist.mean)
    seeds = tuple(s.get("seed", 1) + i for i in range(s.get("batch", 1)))
    latents = F.sample_flux(pipe.transformer, pipe.text_encoder_2, pipe.tokenizer_2, pipe.text_encoder, pipe.tokenizer,
                            pipe.vae, prompt, s.get("negative", ""), seeds, s.get("width", 32), s.get("height", 32),
                            s.get("steps", 3), s.get("sampler", "Euler"), s.get("schedule", "Simple"),
                            s.get("cfg", 1.0), s.get("distilled_cfg", 3.5), s.get("shift"), init_latent, strength)
    with torch.no_grad():
        unit = T.decode_first_stage(pipe.vae, latents)
    return [(255.0 * u).permute(1, 2, 0).numpy().astype(np.uint8) for u in unit]


P = FlowParity({"distilled_cfg": 3.5}, theirs, PROMPT)
ours, difference, check = P.ours, P.difference, P.check


@pytest.mark.parametrize("model", ["dev", "schnell"])
@pytest.mark.parametrize("sampler,perturb", [
    ("Euler", {"steps": 4}), ("Euler a", {"seed": 2}), ("Heun", {"sampler": "Euler"}),
    ("DPM++ 2M", {"sampler": "Euler"}), ("DPM++ SDE", {"seed": 2}), ("DPM++ 2M SDE", {"seed": 2}),
    ("LMS", {"sampler": "Euler"}), ("DPM2", {"sampler": "Heun"}), ("DPM2 a", {"seed": 2}),
])
def test_samplers(flux, model, sampler, perturb, single_thread):
    check(flux[model], sampler=sampler, schedule="Simple", perturb=perturb)


@pytest.mark.parametrize("schedule", ["Simple", "Beta", "Normal", "SGM Uniform", "Karras", "Exponential"])
def test_schedules(flux, schedule, single_thread):
    other = "Karras" if schedule != "Karras" else "Simple"
    check(flux["dev"], sampler="DPM++ 2M", schedule=schedule, steps=4, perturb={"schedule": other})


def test_automatic_is_simple_where_the_sampler_has_no_schedule_and_its_own_elsewhere(flux, single_thread):
    model = flux["dev"]
    assert difference(model, ours_settings={"schedule": "Automatic"}, sampler="Euler", schedule="Simple") == 0
    assert difference(model, ours_settings={"schedule": "Automatic"}, sampler="DPM++ 2M", schedule="Automatic") == 0
    assert difference(model, ours_settings={"schedule": "Automatic"}, sampler="DPM++ 2M", schedule="Simple") > 0


@pytest.mark.parametrize("model", ["dev", "schnell"])
def test_img2img(flux, model, single_thread):
    check(flux[model], init=init_image(), strength=0.6, steps=4, perturb={"strength": 0.75})
    check(flux[model], init=init_image(), strength=0.75, steps=4, sampler="Euler a", perturb={"seed": 3})


def test_cfg_and_negative_prompt(flux, single_thread):
    check(flux["dev"], cfg=1.0, negative="blurry dog", perturb={"cfg": 1.5})  # CFG 1: no uncond pass
    check(flux["dev"], cfg=3.0, negative="blurry dog", perturb={"negative": "sky"})
    check(flux["schnell"], cfg=3.0, negative="blurry dog", sampler="DPM++ 2M", schedule="Karras",
          perturb={"cfg": 2.5})


def test_distilled_guidance_and_mu(flux, single_thread):
    check(flux["dev"], distilled_cfg=3.5, perturb={"distilled_cfg": 5.0})
    check(flux["dev"], distilled_cfg=7.0, perturb={"distilled_cfg": 3.5})
    check(flux["dev"], distilled_cfg=0.0, perturb={"distilled_cfg": 7.0})  # Forge: 0 means 3.5
    check(flux["dev"], shift=0.7, perturb={"shift": None})
    check(flux["schnell"], shift=1.15, sampler="Euler a", perturb={"shift": None})


@pytest.mark.parametrize("prompt,settings,perturb", [
    ("a (red:1.3) cat", {}, {"prompt": "a red cat"}),
    (LONG, {}, {"prompt": " ".join(f"word{i}" for i in range(250))}),
    (LONG, {"cfg": 3.0, "negative": "dog"}, {"negative": "cat"}),
    ("a cat BREAK blue sky", {}, {"prompt": "a cat blue sky"}),
    ("a cat BREAK " + LONG, {}, {"prompt": "a cat"}),  # the first chunk, padded to the longest
    ("a red cat :1.2 AND blue sky :0.6", {}, {"prompt": "a red cat :1.2 AND blue sky :0.7"}),
    ("a red cat AND blue sky", {}, {"prompt": "a red cat"}),
    ("a red cat AND blue sky :0.5", {"cfg": 3.0, "negative": "dog"}, {"prompt": "a red cat AND blue sky :0.6"}),
    ("a [red:blue:0.5] cat", {"steps": 4}, {"prompt": "a red cat"}),
    ("a [red:blue:0.5] cat", {"steps": 4, "sampler": "Heun"}, {"prompt": "a blue cat"}),
], ids=["emphasis", "long", "long-cfg3", "break", "break-long", "and-weights-cfg1", "and-cfg1", "and-cfg3",
        "editing", "editing-second-order"])
def test_prompts(flux, prompt, settings, perturb, single_thread):
    tolerance = 0
    model = flux["dev"]
    assert difference(model, prompt, **settings) <= tolerance
    perturb = dict(perturb)
    changed = perturb.pop("prompt", prompt)
    a = ours(model, changed, **{**settings, **perturb})
    b = theirs(model, prompt, **settings)
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True)) > tolerance


def test_odd_latent_sizes_and_batches(flux, single_thread):
    check(flux["dev"], width=40, height=48, perturb={"seed": 2})  # 5 x 6 latent: circular padding
    check(flux["dev"], batch=2, seed=5, sampler="Euler a", perturb={"seed": 6})


def test_t5_tokens_are_forges(flux):
    from sdcli.conditioning.flux import FluxPromptEncoder

    pipe = flux["dev"].pipe
    encoder = FluxPromptEncoder((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))
    reference = T.T5Engine(pipe.text_encoder_2, pipe.tokenizer_2)
    for prompt in ("a (red:1.3) cat", "a cat BREAK blue sky", LONG, "", "x BREAK " + LONG):
        theirs_chunks, _ = reference.tokenize_line(prompt)
        assert [c.tokens for c in encoder.t5.chunks(prompt)] == [c.tokens for c in theirs_chunks], prompt
        with torch.no_grad():  # as sample_flux (autograd's kernels round differently)
            expected = reference([prompt])[0]
        torch.testing.assert_close(encoder.encode(prompt).crossattn[0], expected, rtol=0, atol=0, msg=prompt)
    with torch.no_grad():
        assert not torch.equal(encoder.encode("a cat").crossattn[0], reference(["a dog"])[0])


def test_lcm_is_comfyuis_flow_form(flux, monkeypatch, single_thread):
    """LCM on Flux: ComfyUI's sample_lcm with CONST noise scaling on the chosen schedule (Forge's LCM reads
    Flux's table through its SD LCM wrap, which is not sound on a flow model), run in the Forge reference's
    pipeline (conditioning, noise, network call) so only the sampler differs."""
    from functools import partial

    from tests.reference import comfy_ref as C
    from tests.reference import kdiffusion_ref as K

    def comfy_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        noise_sampler = K.default_noise_sampler(x) if noise_sampler is None else noise_sampler
        return C.sample_lcm(model, x, sigmas, extra_args, noise_sampler=noise_sampler, model_sampling=C.CONST())

    monkeypatch.setitem(F.SAMPLERS, "LCM flow", (comfy_lcm, {}))
    ours_lcm = partial(difference, flux["dev"], ours_settings={"sampler": "LCM"}, sampler="LCM flow", steps=4)
    assert ours_lcm() == 0
    assert ours_lcm(seed=2) == 0
    assert difference(flux["dev"], ours_settings={"sampler": "Euler"}, sampler="LCM flow", steps=4) > 0
