"""SD3 through sdcli's job (job.generate.run) vs the ComfyUI-path reference (sd3_ref.sample_sd3), in pixels.

Both decode the same way (latent / 1.5305 + 0.0609, VAE decode, clamp, x255 truncated). Tolerance 0 levels;
1 level at CFG above 1, where sdcli's denoiser and ComfyUI's cfg_function order the arithmetic differently.
img2img: both start from the VAE posterior's mean and take the WebUI's tail of the schedule (sigmas[steps -
int(strength * steps) - 1:]; ComfyUI's KSampler denoise builds int(steps / denoise) steps instead).
Each comparison is shown to fail on a perturbed setting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import sd3_ref as R

pytestmark = [pytest.mark.parity]
PROMPT = "a red cat on a hill, photo"
SCALE, SHIFT = 1.5305, 0.0609


def ours(model, prompt, *, init=None, strength=0.75, **s):
    from sdcli.io.images import PreparedInputs
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, ImageInput, validate

    fields = {"prompt": prompt, "negative_prompt": s.get("negative", ""), "steps": s.get("steps", 3),
              "cfg_scale": s.get("cfg", 1.0), "sampler": s.get("sampler", "Euler"),
              "schedule": s.get("schedule", "Simple").lower(), "seed": s.get("seed", 1), "width": 32, "height": 32}
    inputs = None
    if init is not None:
        fields.update(mode="img2img", init=ImageInput(image="-", strength=strength))
        inputs = PreparedInputs(image=init)
    request = GenerationRequest(**fields)
    return np.asarray(next(iter(run(request, model, validate(request), model_name="m", model_hash="h",
                                    inputs=inputs))).image)


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    pipe = model.pipe
    steps, schedule = s.get("steps", 3), s.get("schedule", "Simple")
    init_latent = sigmas = None
    with torch.no_grad():
        if init is not None:
            unit = torch.from_numpy(np.asarray(init.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            init_latent = (pipe.vae.encode(2.0 * unit - 1.0).latent_dist.mean - SHIFT) * SCALE
            full = R.SCHEDULES[schedule](steps)
            sigmas = full[steps - int(min(strength, 0.999) * steps) - 1:]
        latent = R.sample_sd3(pipe, prompt, s.get("negative", ""), s.get("seed", 1), 32, 32, steps,
                              s.get("sampler", "Euler"), schedule, s.get("cfg", 1.0), init_latent, sigmas)
        image = pipe.vae.decode(latent / SCALE + SHIFT).sample
    unit = ((image[0] + 1.0) / 2.0).clamp(0, 1)
    return (255.0 * unit).permute(1, 2, 0).numpy().astype(np.uint8)


def difference(model, ours_settings=None, **settings):
    a = ours(model, PROMPT, **{**settings, **(ours_settings or {})})
    b = theirs(model, PROMPT, **settings)
    worst = int(np.abs(a.astype(int) - b.astype(int)).max())
    print(f"max difference {worst}: {settings} {ours_settings or ''}")
    return worst


def check(model, perturb=None, tolerance=0, **settings):
    assert difference(model, **settings) <= tolerance
    if perturb is not None:
        assert difference(model, perturb, **settings) > tolerance


def _image():
    from PIL import Image

    return Image.radial_gradient("L").convert("RGB").resize((32, 32))


@pytest.mark.parametrize("sampler,perturb", [("Euler", {"steps": 4}), ("Heun", {"sampler": "Euler"}),
                                             ("DPM++ 2M", {"sampler": "Euler"})])
@pytest.mark.parametrize("schedule", ["Simple", "SGM Uniform"])
def test_samplers_and_schedules(tiny_sd3_pipe, sampler, perturb, schedule, single_thread):
    check(tiny_sd3_pipe, sampler=sampler, schedule=schedule, perturb=perturb)


def test_cfg_and_negative_prompt(tiny_sd3_pipe, single_thread):
    check(tiny_sd3_pipe, cfg=1.0, negative="blurry dog", perturb={"cfg": 1.5})  # CFG 1: no uncond pass
    check(tiny_sd3_pipe, cfg=4.5, negative="blurry dog", perturb={"negative": "sky"}, tolerance=1)
    check(tiny_sd3_pipe, cfg=4.5, negative="", sampler="DPM++ 2M", schedule="SGM Uniform", perturb={"cfg": 3.0},
          tolerance=1)


def test_img2img(tiny_sd3_pipe, single_thread):
    check(tiny_sd3_pipe, init=_image(), strength=0.6, steps=4, perturb={"strength": 0.75})
    check(tiny_sd3_pipe, init=_image(), strength=0.75, steps=4, cfg=4.5, negative="dog", sampler="DPM++ 2M",
          perturb={"seed": 3}, tolerance=1)
