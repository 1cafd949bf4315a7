"""Qwen-Image through sdcli's job (job.generate.run) vs the ComfyUI reference (qwenimage_ref.sample), in pixels.

Tolerance 0 levels. Batch size 1 (ComfyUI draws one CPU generator seeded s for the whole batch, sdcli one per
image seeded s + i: the same numbers for one image). img2img: sdcli's WebUI (steps, strength) mapped to ComfyUI's
(steps, denoise) over the same sigmas; both start from the VAE posterior's mean. Euler a: compared with the
WebUI's ancestral noise stream (qwenimage_ref's docstring). Each comparison is shown to fail on a perturbed
setting, and the reference's network call, negated, moves the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import qwenimage_ref as Q

pytestmark = [pytest.mark.parity]
PROMPT = "a red cat on a hill, photo"


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
    steps, image, denoise = s.get("steps", 3), None, 1.0
    if init is not None:
        image = torch.from_numpy(np.asarray(init.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        run = int(min(strength, 0.999) * steps) + 1  # the WebUI's steps of img2img, as ComfyUI's denoise
        steps, denoise = run, run / steps
    return [Q.sample(model.pipe, prompt, s.get("negative", ""), s.get("seed", 1), 32, 32, steps,
                     s.get("sampler", "Euler"), s.get("schedule", "Simple"), s.get("cfg", 1.0),
                     s.get("shift") or 1.15, image, denoise)]


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
def test_samplers_and_schedules(tiny_qwenimage_pipe, sampler, perturb, schedule, single_thread):
    check(tiny_qwenimage_pipe, sampler=sampler, schedule=schedule, perturb=perturb)


def test_cfg_negative_and_shift(tiny_qwenimage_pipe, single_thread):
    model = tiny_qwenimage_pipe
    check(model, cfg=1.0, negative="blurry dog", perturb={"cfg": 1.5})  # CFG 1: no uncond pass
    check(model, cfg=2.5, negative="blurry dog", perturb={"negative": "sky"})
    check(model, cfg=4.0, negative="", sampler="DPM++ 2M", schedule="Karras", perturb={"cfg": 3.0})
    check(model, cfg=2.5, negative="a red dog on a hill, photo", perturb={"cfg": 2.0})  # one batch (same length)
    check(model, shift=3.1, steps=4, perturb={"shift": 1.15})


def test_img2img(tiny_qwenimage_pipe, single_thread):
    check(tiny_qwenimage_pipe, init=_image(), strength=0.6, steps=4, perturb={"strength": 0.75})
    check(tiny_qwenimage_pipe, init=_image(), strength=0.75, steps=4, sampler="Euler a", cfg=2.0, negative="dog",
          perturb={"seed": 3})


def test_reference_fails_on_a_perturbed_network_call(tiny_qwenimage_pipe, single_thread):
    """The reference's network call, negated, moves the pixels (the comparison can fail)."""
    original = Q.QwenImageModel.network
    try:
        Q.QwenImageModel.network = lambda self, x, t, c: -original(self, x, t, c)
        assert difference(tiny_qwenimage_pipe) > 0
    finally:
        Q.QwenImageModel.network = original
