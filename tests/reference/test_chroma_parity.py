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

import pytest
import torch

from tests.reference import chroma_ref as R
from tests.reference.flow_parity import NON_ANCESTRAL, FlowParity, comfy_img2img, init_image

pytestmark = [pytest.mark.parity]


def webui_noise(x, seed):
    """The WebUI/Forge ancestral noise: the image's generator, after its initial noise draw."""
    generator = torch.manual_seed(seed)
    torch.randn(x.size(), generator=generator)
    return lambda sigma, sigma_next: torch.randn(x.size(), generator=generator)


def theirs(model, prompt, *, init=None, strength=0.75, noise=None, **s):
    """ComfyUI's image (chroma_ref.sample_chroma); `noise`: its ancestral noise source (None: ComfyUI's own)."""
    steps, image, denoise = comfy_img2img(s["steps"], init, strength)
    return R.sample_chroma(model.pipe, prompt, s["negative"], s["seed"], steps=steps, sampler=s["sampler"],
                           schedule=s["schedule"], cfg=s["cfg"], init_image=image, denoise=denoise,
                           noise_sampler=noise)


P = FlowParity("chroma", theirs)


@pytest.mark.parametrize("sampler,perturb", NON_ANCESTRAL)
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_samplers(tiny_chroma_pipe, sampler, perturb, cfg, single_thread):
    P.check(tiny_chroma_pipe, sampler=sampler, cfg=cfg, perturb=perturb)


@pytest.mark.parametrize("schedule", ["Simple", "Karras"])
def test_schedules(tiny_chroma_pipe, schedule, single_thread):
    other = "Karras" if schedule == "Simple" else "Simple"
    P.check(tiny_chroma_pipe, sampler="DPM++ 2M", schedule=schedule, steps=4, perturb={"schedule": other})


def test_beta_is_the_webuis_not_comfyuis(tiny_chroma_pipe, single_thread):
    """sdcli's Beta is the WebUI's (sigma_min..sigma_max interpolated at beta quantiles of linspace(0, 1, n));
    ComfyUI's beta_scheduler picks table sigmas at rounded beta-quantile timesteps of n points without the end:
    another schedule, so Chroma's default schedule is Simple (equal to ComfyUI's simple)."""
    assert P.difference(tiny_chroma_pipe, sampler="Euler", schedule="Beta", steps=4) > 0


def test_negative_prompt_and_text_mask(tiny_chroma_pipe, single_thread):
    P.check(tiny_chroma_pipe, negative="ugly, dark", perturb={"negative": "ugly"})


def test_euler_a_noise_sources(tiny_chroma_pipe, single_thread):
    P.check(tiny_chroma_pipe, sampler="Euler a", noise=webui_noise, perturb={"seed": 2})
    assert P.difference(tiny_chroma_pipe, sampler="Euler a") > 0  # ComfyUI's own noise source


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_img2img(tiny_chroma_pipe, sampler, single_thread):
    """WebUI strength 0.6 of 4 steps = ComfyUI 3 steps at denoise 0.75 (comfy_img2img); 0.8 is another."""
    P.check(tiny_chroma_pipe, init=init_image(), strength=0.6, steps=4, sampler=sampler, perturb={"strength": 0.8})
