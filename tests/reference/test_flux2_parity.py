"""Flux.2 klein through sdcli's job (job.generate.run) vs the ComfyUI reference (flux2_ref.sample), in pixels.

Tolerance 0 levels everywhere. Batch size 1 (ComfyUI draws one CPU generator seeded s for the whole batch,
sdcli one per image seeded s + i: the same numbers for one image). img2img: sdcli's WebUI steps/strength are
mapped to ComfyUI's steps/denoise that run the same sigmas (WebUI: int(strength x steps) + 1 steps from the
tail of the `steps` schedule; ComfyUI: `steps` steps from the tail of an int(steps / denoise) schedule);
both start from the VAE posterior's mean. Euler a: compared with the WebUI's ancestral noise stream (see
zimage_ref). Normal and SGM Uniform are not compared: sdcli's Flux table maps timesteps to sigmas as Forge
does (identity), ComfyUI's ModelSamplingFlux shifts them; nor Beta: sdcli's is the WebUI's (interpolated
between sigma_min and sigma_max), ComfyUI's picks table entries (4 levels apart on the tiny model). Each
comparison is shown to fail on a perturbed setting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import flux2_ref as F2

pytestmark = [pytest.mark.parity]
PROMPT = "a red cat on a hill, photo"


@pytest.fixture(scope="module")
def model(tiny_flux2):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_flux2)


def ours(model, prompt, *, init=None, strength=0.75, **s):
    from sdcli.io.images import PreparedInputs
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, ImageInput, validate

    fields = {"prompt": prompt, "negative_prompt": s.get("negative", ""), "steps": s.get("steps", 3),
              "cfg_scale": s.get("cfg", 1.0), "sampler": s.get("sampler", "Euler"),
              "schedule": s.get("schedule", "Simple").lower(), "seed": s.get("seed", 1), "batch_size": 1,
              "width": 32, "height": 32, "shift": s.get("shift")}
    inputs = None
    if init is not None:
        fields.update(mode="img2img", init=ImageInput(image="-", strength=strength))
        inputs = PreparedInputs(image=init)
    request = GenerationRequest(**fields)
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h",
                                             inputs=inputs)]


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    pipe = model.pipe
    steps, init_latent, denoise = s.get("steps", 3), None, 1.0
    if init is not None:
        unit = torch.from_numpy(np.asarray(init.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            init_latent = F2.process_in(pipe.vae, pipe.vae.encode(2.0 * unit - 1.0).latent_dist.mean)
        # The WebUI's (steps, strength) as ComfyUI's (steps, denoise) over the same sigmas.
        run = int(min(strength, 0.999) * steps) + 1
        steps, denoise = run, run / s.get("steps", 3)
    latents = F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, s.get("negative", ""),
                       s.get("seed", 1), 32, 32, steps, s.get("sampler", "Euler"), s.get("schedule", "Simple"),
                       s.get("cfg", 1.0), s.get("shift") or 2.02, init_latent, denoise)
    return F2.decode(pipe.vae, latents)


def difference(model, prompt=PROMPT, ours_settings=None, **settings):
    """Largest per-pixel difference (0-255); `ours_settings` change sdcli's side only (a perturbation)."""
    a = ours(model, prompt, **{**settings, **(ours_settings or {})})
    b = theirs(model, prompt, **settings)
    worst = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))
    print(f"max difference {worst}: {settings} {ours_settings or ''}")
    return worst


def check(model, prompt=PROMPT, perturb=None, **settings):
    """sdcli equals ComfyUI (0 levels); with `perturb` (sdcli-side settings) the comparison fails."""
    assert difference(model, prompt, **settings) == 0
    if perturb is not None:
        assert difference(model, prompt, perturb, **settings) > 0


def _image():
    from PIL import Image

    return Image.radial_gradient("L").convert("RGB").resize((32, 32))


@pytest.mark.parametrize("sampler,perturb", [
    ("Euler", {"steps": 4}), ("Euler a", {"seed": 2}), ("Heun", {"sampler": "Euler"}),
    ("DPM++ 2M", {"sampler": "Euler"}),
])
@pytest.mark.parametrize("schedule", ["Simple", "Karras"])
def test_samplers_and_schedules(model, sampler, perturb, schedule, single_thread):
    check(model, sampler=sampler, schedule=schedule, perturb=perturb)


def test_cfg_negative_and_shift(model, single_thread):
    check(model, cfg=1.0, negative="blurry dog", perturb={"cfg": 1.5})  # CFG 1: no uncond pass
    check(model, cfg=3.0, negative="blurry dog", perturb={"negative": "sky"})
    check(model, cfg=2.5, negative="", sampler="DPM++ 2M", schedule="Karras", perturb={"cfg": 2.0})
    check(model, shift=1.0, steps=4, perturb={"shift": 2.02})


def test_img2img(model, single_thread):
    check(model, init=_image(), strength=0.6, steps=4, perturb={"strength": 0.75})
    check(model, init=_image(), strength=0.75, steps=4, sampler="Euler a", cfg=2.0, negative="dog",
          perturb={"seed": 3})


def test_reference_fails_on_a_perturbed_network_call(model, single_thread):
    """The reference's network call with the text ids shifted moves the pixels (the comparison can fail)."""
    original = F2.Flux2Model.network
    try:
        F2.Flux2Model.network = lambda self, x, t, c: original(self, x, t * 0.99, c)
        assert difference(model) > 0
    finally:
        F2.Flux2Model.network = original
