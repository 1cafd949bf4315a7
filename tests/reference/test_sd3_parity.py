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
from tests.reference.flow_parity import CFG1, NON_ANCESTRAL, FlowParity, unit_tensor

pytestmark = [pytest.mark.parity]
SCALE, SHIFT = 1.5305, 0.0609


def theirs(model, prompt, *, init=None, strength=0.75, **s):
    """The ComfyUI-path image (sd3_ref.sample_sd3), img2img on the WebUI's tail of the schedule."""
    pipe = model.pipe
    steps, schedule = s["steps"], s["schedule"]
    init_latent = sigmas = None
    with torch.no_grad():
        if init is not None:
            init_latent = (pipe.vae.encode(2.0 * unit_tensor(init) - 1.0).latent_dist.mean - SHIFT) * SCALE
            sigmas = R.SCHEDULES[schedule](steps)[steps - int(min(strength, 0.999) * steps) - 1:]
        latent = R.sample_sd3(pipe, prompt, s["negative"], s["seed"], 32, 32, steps, s["sampler"], schedule, s["cfg"],
                              init_latent, sigmas)
        image = pipe.vae.decode(latent / SCALE + SHIFT).sample
    unit = ((image[0] + 1.0) / 2.0).clamp(0, 1)
    return (255.0 * unit).permute(1, 2, 0).numpy().astype(np.uint8)


P = FlowParity("sd3", theirs)
test_samplers_and_schedules = P.sampler_grid(NON_ANCESTRAL, ["Simple", "SGM Uniform"])
test_img2img = P.checks([
    {"strength": 0.6, "steps": 4, "perturb": {"strength": 0.75}},
    {"strength": 0.75, "steps": 4, "cfg": 4.5, "negative": "dog", "sampler": "DPM++ 2M", "perturb": {"seed": 3},
     "tolerance": 1},
], img2img=True)
test_cfg_and_negative_prompt = P.checks([
    CFG1,
    {"cfg": 4.5, "negative": "blurry dog", "perturb": {"negative": "sky"}, "tolerance": 1},
    {"cfg": 4.5, "negative": "", "sampler": "DPM++ 2M", "schedule": "SGM Uniform", "perturb": {"cfg": 3.0},
     "tolerance": 1},
])
