"""Qwen-Image through sdcli's job (job.generate.run) vs the ComfyUI reference (qwenimage_ref.sample), in pixels.

Tolerance 0 levels. Batch size 1 (ComfyUI draws one CPU generator seeded s for the whole batch, sdcli one per
image seeded s + i: the same numbers for one image). img2img: sdcli's WebUI (steps, strength) mapped to ComfyUI's
(steps, denoise) over the same sigmas; both start from the VAE posterior's mean. Euler a: compared with the
WebUI's ancestral noise stream (qwenimage_ref's docstring). Each comparison is shown to fail on a perturbed
setting, and the reference's network call, negated, moves the pixels.
"""

from __future__ import annotations

import pytest

from tests.reference import qwenimage_ref as Q
from tests.reference.flow_parity import CFG1, IMG2IMG, SAMPLERS, SCHEDULES, FlowParity, comfy_img2img, negated

pytestmark = [pytest.mark.parity]


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    """ComfyUI's image (qwenimage_ref.sample) from the same pipeline; the reference's shift defaults to 1.15."""
    steps, image, denoise = comfy_img2img(s["steps"], init, strength)
    return [Q.sample(model.pipe, prompt, s["negative"], s["seed"], 32, 32, steps, s["sampler"], s["schedule"],
                     s["cfg"], s.get("shift") or 1.15, image, denoise)]


P = FlowParity("qwenimage", theirs)


test_samplers_and_schedules = P.sampler_grid(SAMPLERS, SCHEDULES)
test_img2img = P.checks(IMG2IMG, img2img=True)
test_cfg_negative_and_shift = P.checks([
    CFG1,
    {"cfg": 2.5, "negative": "blurry dog", "perturb": {"negative": "sky"}},
    {"cfg": 4.0, "negative": "", "sampler": "DPM++ 2M", "schedule": "Karras", "perturb": {"cfg": 3.0}},
    {"cfg": 4.0, "negative": "blurry, dark", "perturb": {"negative": "a cat"}},  # ComfyUI's plain CFG, no rescale
    {"cfg": 2.5, "negative": "a red dog on a hill, photo", "perturb": {"cfg": 2.0}},  # one batch (same length)
    {"shift": 3.1, "steps": 4, "perturb": {"shift": 1.15}},
])
# The reference's network call, negated, moves the pixels (the comparison can fail).
test_reference_fails_on_a_perturbed_network_call = P.network_test(Q.QwenImageModel, negated)
