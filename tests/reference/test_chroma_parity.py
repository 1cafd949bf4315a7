"""Chroma through sdcli's job (job.generate.run) vs the ComfyUI reference (chroma_ref.sample_chroma), in pixels.

Tolerance 0 levels everywhere (Beta excepted: another schedule in ComfyUI, shown). Batch size 1 with seed s
(ComfyUI's one batch generator = sdcli's per-image one). img2img: sdcli's WebUI strength (t_enc = int(strength x
steps); the last t_enc + 1 steps of a `steps` schedule run) is ComfyUI's KSampler with steps t_enc + 1 and denoise
(t_enc + 1) / steps (4 steps at 0.6 = ComfyUI 3 steps at 0.75). Euler a: ComfyUI draws its ancestral noise from
a new generator seeded with the seed (its first draw repeats the initial noise), sdcli from the image's generator
after the initial noise, as the WebUI/Forge do: equal (0 levels) with the WebUI's noise source in the reference,
different with ComfyUI's (shown). Each comparison is shown to fail on a perturbed setting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import chroma_ref as R

pytestmark = [pytest.mark.parity]
PROMPT = "a red cat on a hill, photo"


@pytest.fixture(scope="module")
def chroma(tiny_chroma):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_chroma)


def _image():
    from PIL import Image

    return Image.radial_gradient("L").convert("RGB").resize((32, 32))


def ours(model, *, init=None, strength=0.75, **s):
    """sdcli's image (the job path) as a uint8 array."""
    from sdcli.io.images import PreparedInputs
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, ImageInput, validate

    fields = {"prompt": s.get("prompt", PROMPT), "negative_prompt": s.get("negative", "blurry"),
              "steps": s.get("steps", 3), "cfg_scale": s.get("cfg", 4.0), "sampler": s.get("sampler", "Euler"),
              "schedule": s.get("schedule", "Simple").lower(), "seed": s.get("seed", 1), "width": 32, "height": 32}
    inputs = None
    if init is not None:
        fields.update(mode="img2img", init=ImageInput(image="-", strength=strength))
        inputs = PreparedInputs(image=init)
    request = GenerationRequest(**fields)
    (image,) = run(request, model, validate(request), model_name="m", model_hash="h", inputs=inputs)
    return np.asarray(image.image)


def webui_noise(x, seed):
    """The WebUI/Forge ancestral noise: the image's generator, after its initial noise draw."""
    generator = torch.manual_seed(seed)
    torch.randn(x.size(), generator=generator)
    return lambda sigma, sigma_next: torch.randn(x.size(), generator=generator)


def theirs(model, *, init=None, comfy_steps=None, denoise=1.0, noise=None, **s):
    unit = None
    if init is not None:
        unit = torch.from_numpy(np.asarray(init, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return R.sample_chroma(model.pipe, s.get("prompt", PROMPT), s.get("negative", "blurry"), s.get("seed", 1),
                           steps=comfy_steps or s.get("steps", 3), sampler=s.get("sampler", "Euler"),
                           schedule=s.get("schedule", "Simple"), cfg=s.get("cfg", 4.0), init_image=unit,
                           denoise=denoise, noise_sampler=noise)


def difference(a, b):
    worst = int(np.abs(a.astype(int) - b.astype(int)).max())
    print(f"max difference {worst}")
    return worst


@pytest.mark.parametrize("sampler,perturb", [
    ("Euler", {"steps": 4}), ("Heun", {"sampler": "Euler"}), ("DPM++ 2M", {"sampler": "Euler"}),
])
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_samplers(chroma, sampler, perturb, cfg, single_thread):
    settings = {"sampler": sampler, "cfg": cfg}
    reference = theirs(chroma, **settings)
    assert difference(ours(chroma, **settings), reference) == 0
    assert difference(ours(chroma, **{**settings, **perturb}), reference) > 0


@pytest.mark.parametrize("schedule", ["Simple", "Karras"])
def test_schedules(chroma, schedule, single_thread):
    other = "Karras" if schedule == "Simple" else "Simple"
    reference = theirs(chroma, sampler="DPM++ 2M", schedule=schedule, steps=4)
    assert difference(ours(chroma, sampler="DPM++ 2M", schedule=schedule, steps=4), reference) == 0
    assert difference(ours(chroma, sampler="DPM++ 2M", schedule=other, steps=4), reference) > 0


def test_beta_is_the_webuis_not_comfyuis(chroma, single_thread):
    """sdcli's Beta is the WebUI's (sigma_min..sigma_max interpolated at beta quantiles of linspace(0, 1, n));
    ComfyUI's beta_scheduler picks table sigmas at rounded beta-quantile timesteps of n points without the end:
    another schedule, so Chroma's default schedule is Simple (equal to ComfyUI's simple)."""
    reference = theirs(chroma, sampler="Euler", schedule="Beta", steps=4)
    assert difference(ours(chroma, sampler="Euler", schedule="Beta", steps=4), reference) > 0


def test_negative_prompt_and_text_mask(chroma, single_thread):
    reference = theirs(chroma, negative="ugly, dark")
    assert difference(ours(chroma, negative="ugly, dark"), reference) == 0
    assert difference(ours(chroma, negative="ugly"), reference) > 0


def test_euler_a_noise_sources(chroma, single_thread):
    reference = theirs(chroma, sampler="Euler a", noise=webui_noise)
    assert difference(ours(chroma, sampler="Euler a"), reference) == 0
    assert difference(ours(chroma, sampler="Euler a", seed=2), reference) > 0
    assert difference(ours(chroma, sampler="Euler a"), theirs(chroma, sampler="Euler a")) > 0  # ComfyUI's own


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_img2img(chroma, sampler, single_thread):
    init = _image()
    reference = theirs(chroma, init=init, comfy_steps=3, denoise=0.75, sampler=sampler)
    assert difference(ours(chroma, init=init, strength=0.6, steps=4, sampler=sampler), reference) == 0
    assert difference(ours(chroma, init=init, strength=0.8, steps=4, sampler=sampler), reference) > 0
