"""Sigma schedules equal the WebUI reference's for every type and step count (no model needed)."""

import pytest
import torch

from sdcli.sampling.samplers import WEBUI_SCHEDULE_LABELS
from sdcli.sampling.schedules import ModelSigmas, alphas_cumprod, get_sigmas
from tests.reference import kdiffusion_ref as K
from tests.reference.pipeline_ref import alphas_cumprod as ref_alphas_cumprod
from tests.reference.webui_ref import CompVisDenoiser

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


@pytest.fixture(scope="module")
def models():
    ours = ModelSigmas(alphas_cumprod(SD_CONFIG))
    theirs = CompVisDenoiser(None, ref_alphas_cumprod(SD_CONFIG), v=False)
    return ours, theirs


def test_full_sigma_range(models):
    ours, _ = models
    assert round(ours.sigma_max, 3) == 14.615 and round(ours.sigma_min, 4) == 0.0292
    assert float(get_sigmas("uniform", 20, ours)[0]) == pytest.approx(14.6146, abs=1e-4)  # not t=951's 11.07


@pytest.mark.parametrize("schedule", list(WEBUI_SCHEDULE_LABELS))
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 10, 11, 20, 33, 50])
def test_schedules_are_the_webuis(models, schedule, steps):
    ours, theirs = models
    function, _rho, inner = K.SCHEDULERS[WEBUI_SCHEDULE_LABELS[schedule]]
    kwargs = {"inner_model": theirs} if inner else {}
    expected = function(n=steps, sigma_min=theirs.sigmas[0].item(), sigma_max=theirs.sigmas[-1].item(),
                        device="cpu", **kwargs)
    got = get_sigmas(schedule, steps, ours)
    # The WebUI's quirks, kept: KL Optimal ends at sigma min, not 0; DDIM can give a step more.
    if schedule not in ("kl optimal", "ddim"):
        assert got.shape == (steps + 1,) and float(got[-1]) == 0
    torch.testing.assert_close(got, expected.float(), rtol=1e-6, atol=1e-6)


def test_discarding_the_penultimate_sigma(models):
    ours, _ = models
    kept = get_sigmas("karras", 4, ours, discard_penultimate=True)
    five = get_sigmas("karras", 5, ours)
    assert len(kept) == 5 and torch.equal(kept, torch.cat([five[:-2], five[-1:]]))


def test_sigma_to_t_copies_the_log_sigmas_once_per_device(models):
    """Each step converts sigma to t; the table must not be copied to the device each time (a GPU stall)."""
    import torch

    sigmas = models[0]
    first = sigmas.sigma_to_t(torch.tensor([1.0, 2.0]))
    table = sigmas.log_sigmas_on(torch.device("cpu"))
    assert torch.equal(sigmas.sigma_to_t(torch.tensor([1.0, 2.0])), first)
    assert sigmas.log_sigmas_on(torch.device("cpu")) is table and list(sigmas._log_sigmas_on) == [torch.device("cpu")]
    assert torch.allclose(sigmas.t_to_sigma(first), torch.tensor([1.0, 2.0]), rtol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 26, 50])
@pytest.mark.parametrize("table", ["flux", "discrete"])
def test_comfy_beta_is_comfyuis(steps, table):
    """Comfy Beta (a ComfyUI graph's "beta") equals ComfyUI's beta_scheduler (chroma_ref's transcription) on a flow
    table; the WebUI's Beta is another schedule."""
    from sdcli.sampling.parameterisation import FlowSigmas, FluxSigmas
    from tests.reference import chroma_ref
    from tests.reference import comfy_ref as C

    ours, theirs = (FluxSigmas(1.15), C.Flux(shift=1.15)) if table == "flux" else (
        FlowSigmas(3.0, 1.0), C.DiscreteFlow(shift=3.0, multiplier=1.0))
    expected = chroma_ref.beta_scheduler(theirs, steps)
    got = get_sigmas("comfy beta", steps, ours)
    torch.testing.assert_close(got, expected.float(), rtol=0, atol=0)
    if steps > 2:
        assert not torch.allclose(get_sigmas("beta", steps, ours), expected.float())
