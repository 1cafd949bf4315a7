"""Flux.2 (klein, dev) through sdcli's job (job.generate.run) vs the ComfyUI reference (flux2_ref.sample), in pixels;
and the Flux2 schedule's sigmas vs ComfyUI's Flux2Scheduler node (flux2_ref.flux2_scheduler).

Tolerance 0 levels everywhere. Batch size 1 (ComfyUI draws one CPU generator seeded s for the whole batch,
sdcli one per image seeded s + i: the same numbers for one image). img2img: sdcli's WebUI steps/strength are
mapped to ComfyUI's steps/denoise that run the same sigmas (WebUI: int(strength x steps) + 1 steps from the
tail of the `steps` schedule; ComfyUI: `steps` steps from the tail of an int(steps / denoise) schedule);
both start from the VAE posterior's mean. Euler a: compared with the WebUI's ancestral noise stream (see
zimage_ref). Normal and SGM Uniform are not compared: sdcli's Flux table maps timesteps to sigmas as Forge
does (identity), ComfyUI's ModelSamplingFlux shifts them; nor Beta: sdcli's is the WebUI's (interpolated
between sigma_min and sigma_max), ComfyUI's picks table entries (4 levels apart on the tiny model). Flux.2 dev:
its text as diffusers' Flux2Pipeline encodes it (flux2_ref.encode_dev), its distilled guidance fed to the network.
Each comparison is shown to fail on a perturbed setting.
"""

from __future__ import annotations

import pytest
import torch

from tests.reference import flux2_ref as F2
from tests.reference.flow_parity import CFG1, IMG2IMG, SAMPLERS, SCHEDULES, TRUE_CFG, FlowParity, comfy_img2img

pytestmark = [pytest.mark.parity]


def theirs(model, prompt, *, init=None, strength=0.75, dev=False, **s):
    """ComfyUI's image (flux2_ref.sample) from the same components; the reference's shift defaults to 2.02; `dev`:
    Flux.2 dev's text encoding and its guidance (sdcli's default 4 unless the row sets distilled_cfg)."""
    pipe = model.pipe
    steps, start, denoise = comfy_img2img(s["steps"], init, strength, pipe.vae, F2.process_in)
    extra = {"guidance": s.get("distilled_cfg", 4.0), "encoder": F2.encode_dev} if dev else {}
    return F2.decode(pipe.vae, F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, s["negative"],
                                         s["seed"], 32, 32, steps, s["sampler"], s["schedule"], s["cfg"],
                                         s.get("shift") or 2.02, start, denoise, **extra))


def theirs_dev(model, prompt, **s):
    return theirs(model, prompt, dev=True, **s)


P = FlowParity("flux2", theirs)

test_samplers_and_schedules = P.sampler_grid(SAMPLERS, SCHEDULES)
test_img2img = P.checks(IMG2IMG, img2img=True)
test_cfg_negative_and_shift = P.checks([CFG1, *TRUE_CFG, {"shift": 1.0, "steps": 4, "perturb": {"shift": 2.02}}])
# The reference's network call with the timesteps scaled moves the pixels (the comparison can fail).
test_reference_fails_on_a_perturbed_network_call = P.network_test(
    F2.Flux2Model, lambda network: lambda self, x, t, c: network(self, x, t * 0.99, c))
# ComfyUI's Flux2Scheduler (sdcli's default for Flux.2): txt2img, a second-order and a multistep sampler, img2img.
FLUX2_SCHEDULE = {"schedule": "Flux2"}
test_flux2_schedule = P.checks([{**FLUX2_SCHEDULE, "perturb": {"schedule": "Simple"}},
                                {**FLUX2_SCHEDULE, "sampler": "DPM++ 2M", "steps": 4, "perturb": {"steps": 5}},
                                {**FLUX2_SCHEDULE, "sampler": "Heun", "cfg": 2.0, "negative": "dog",
                                 "perturb": {"sampler": "Euler"}}])
test_flux2_schedule_img2img = P.checks([{**FLUX2_SCHEDULE, "strength": 0.6, "steps": 4,
                                         "perturb": {"strength": 0.75}}], img2img=True)

# Flux.2 dev (its defaults: the Flux2 schedule, guidance 4, CFG 1).
D = FlowParity("flux2-dev", theirs_dev)
test_dev_samplers = D.sampler_grid(SAMPLERS, ["Flux2"])  # Simple: the shift row below
test_dev_guidance_cfg_and_shift = D.checks([
    {"distilled_cfg": 2.5, "perturb": {"distilled_cfg": 4.0}},
    CFG1, TRUE_CFG[0],
    {"schedule": "Simple", "shift": 1.0, "steps": 4, "perturb": {"shift": 2.02}}])
test_dev_img2img = D.checks(IMG2IMG, img2img=True)
test_dev_reference_fails_on_a_perturbed_network_call = D.network_test(
    F2.Flux2Model, lambda network: lambda self, x, t, c: network(self, x, t * 0.99, c))


@pytest.mark.parametrize(("steps", "width", "height"), [(4, 32, 32), (20, 1024, 1024), (50, 1024, 1024),
                                                        (28, 832, 1216), (8, 2048, 2048), (2, 512, 512)])
def test_flux2_schedule_is_comfyuis_flux2scheduler(steps, width, height):
    """The sigmas equal the node's exactly (tokens above 4300 too: 2048 px), and its mu is diffusers'
    compute_empirical_mu, whose scheduler gives the same sigmas to float rounding; a step or a token more moves
    them (the comparison can fail)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    from sdcli.sampling.parameterisation import FluxSigmas
    from sdcli.sampling.schedules import empirical_mu, get_sigmas

    table, tokens = FluxSigmas(2.02), width * height // 256
    ours = get_sigmas("flux2", steps, table, tokens=tokens)
    assert torch.equal(ours, F2.flux2_scheduler(steps, width, height))
    assert empirical_mu(tokens, steps) == compute_empirical_mu(tokens, steps)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    scheduler.set_timesteps(sigmas=[1 - i / steps for i in range(steps)], mu=compute_empirical_mu(tokens, steps))
    assert torch.allclose(ours, scheduler.sigmas.float(), atol=1e-6)
    assert not torch.equal(get_sigmas("flux2", steps, table, tokens=tokens + 1), ours)
    assert len(get_sigmas("flux2", steps + 1, table, tokens=tokens)) == steps + 2
    # --shift gives the mu itself: the empirical one reproduces the default, another moves the sigmas
    assert torch.equal(get_sigmas("flux2", steps, table, tokens=tokens, mu=empirical_mu(tokens, steps)), ours)
    assert not torch.equal(get_sigmas("flux2", steps, table, tokens=tokens, mu=1.5), ours)
