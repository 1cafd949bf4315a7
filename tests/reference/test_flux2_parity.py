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

import pytest

from tests.reference import flux2_ref as F2
from tests.reference.flow_parity import CFG1, IMG2IMG, SAMPLERS, SCHEDULES, TRUE_CFG, FlowParity, comfy_img2img

pytestmark = [pytest.mark.parity]


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    """ComfyUI's image (flux2_ref.sample) from the same components; the reference's shift defaults to 2.02."""
    pipe = model.pipe
    steps, start, denoise = comfy_img2img(s["steps"], init, strength, pipe.vae, F2.process_in)
    return F2.decode(pipe.vae, F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, s["negative"],
                                         s["seed"], 32, 32, steps, s["sampler"], s["schedule"], s["cfg"],
                                         s.get("shift") or 2.02, start, denoise))


P = FlowParity("flux2", theirs)

test_samplers_and_schedules = P.sampler_grid(SAMPLERS, SCHEDULES)
test_img2img = P.checks(IMG2IMG, img2img=True)
test_cfg_negative_and_shift = P.checks([CFG1, *TRUE_CFG, {"shift": 1.0, "steps": 4, "perturb": {"shift": 2.02}}])
# The reference's network call with the timesteps scaled moves the pixels (the comparison can fail).
test_reference_fails_on_a_perturbed_network_call = P.network_test(
    F2.Flux2Model, lambda network: lambda self, x, t, c: network(self, x, t * 0.99, c))
