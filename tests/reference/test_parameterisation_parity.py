"""sdcli's noise parameterisations (sampling.parameterisation) vs ComfyUI's (tests/reference/comfy_ref.py).

Eps and V are what the WebUI parity tests run end to end; Flow (rectified flow, ComfyUI's CONST)
and its sigma tables have no model in sdcli yet, so their formulas are checked here, value by value.
"""

from __future__ import annotations

import pytest
import torch

from tests.reference import comfy_ref

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, out, x0, noise = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(4))
    return x, out, x0, noise


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def check(ours, theirs, sigma):
    """Input scaling, denoised latent, start latent (txt2img and img2img) and the final inverse scaling."""
    x, out, x0, noise = _inputs()
    rows = sigma.reshape(-1, 1, 1, 1)
    _close(ours.scale_input(x, rows), theirs.calculate_input(sigma, x))
    _close(ours.denoised(x, rows, out), theirs.calculate_denoised(sigma, out, x))
    _close(ours.noise_scaling(rows, noise, x0), theirs.noise_scaling(sigma, noise, x0))
    _close(ours.noise_scaling(rows, noise), theirs.noise_scaling(sigma, noise, torch.zeros_like(noise)))
    _close(ours.inverse_noise_scaling(rows, x), theirs.inverse_noise_scaling(sigma, x))


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_eps_and_v_are_comfyuis(kind):
    from sdcli.sampling.parameterisation import Eps, V
    from sdcli.sampling.schedules import ModelSigmas, alphas_cumprod

    table = ModelSigmas(alphas_cumprod(SD_CONFIG))
    _close(table.sigmas, comfy_ref.discrete_sigmas())
    ours = (V if kind == "v" else Eps)(table)
    check(ours, comfy_ref.V_PREDICTION() if kind == "v" else comfy_ref.EPS(), torch.tensor([14.6, 1.0, 0.03]))


@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_flow_on_the_discrete_flow_table_is_comfyuis_const(shift):
    from sdcli.sampling.parameterisation import Flow, FlowSigmas

    table, theirs = FlowSigmas(shift), comfy_ref.DiscreteFlow(shift)
    _close(table.sigmas, theirs.sigmas)
    assert (table.sigma_min, table.sigma_max) == (pytest.approx(float(theirs.sigmas[0])), 1.0)
    t = torch.tensor([999.0, 500.0, 12.5])
    _close(table.t_to_sigma(t), theirs.sigma(t))
    _close(table.sigma_to_t(theirs.sigma(t)), theirs.timestep(theirs.sigma(t)))
    check(Flow(table), comfy_ref.CONST(), theirs.sigma(t))


@pytest.mark.parametrize("shift", [1.15, 0.5])
def test_flow_on_the_flux_table_is_comfyuis(shift):
    """ComfyUI's table and timestep; t -> sigma is Forge's identity (PredictionFlux.sigma), not ComfyUI's shift."""
    from sdcli.sampling.parameterisation import Flow, FluxSigmas
    from tests.reference.forge_flux_ref import PredictionFlux

    table, theirs, forge = FluxSigmas(shift), comfy_ref.Flux(shift), PredictionFlux(mu=shift)
    _close(table.sigmas, theirs.sigmas)
    torch.testing.assert_close(table.sigmas, forge.sigmas, rtol=0, atol=0)
    t = torch.tensor([0.999, 0.5, 0.01])
    _close(table.t_to_sigma(t), forge.sigma(t))
    assert not torch.allclose(table.t_to_sigma(t), theirs.sigma(t))
    _close(table.sigma_to_t(t), theirs.timestep(t))
    check(Flow(table), comfy_ref.CONST(), theirs.sigma(t))


def test_the_comparison_can_fail():
    """Each check above tells the parameterisations apart: eps is not v, flow is not eps, shifts differ."""
    from sdcli.sampling.parameterisation import Eps, Flow, FlowSigmas
    from sdcli.sampling.schedules import ModelSigmas, alphas_cumprod

    sigma = torch.tensor([0.9, 0.5, 0.1])
    eps = Eps(ModelSigmas(alphas_cumprod(SD_CONFIG)))
    for ours, theirs in ((eps, comfy_ref.V_PREDICTION()), (Flow(FlowSigmas()), comfy_ref.EPS()),
                         (eps, comfy_ref.CONST())):
        with pytest.raises(AssertionError):
            check(ours, theirs, sigma)
    with pytest.raises(AssertionError):
        _close(FlowSigmas(3.0).sigmas, comfy_ref.DiscreteFlow(2.0).sigmas)


def test_flow_has_no_timestep_samplers_or_lcm():
    from sdcli.sampling.parameterisation import Flow, FlowSigmas

    flow = Flow(FlowSigmas(3.0))
    with pytest.raises(ValueError, match="discrete eps/v model"):
        flow.lcm()
    with pytest.raises(ValueError, match="discrete eps/v model"):
        _ = flow.alphas_cumprod


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_comfy_wrap_calls_the_nearest_timestep_and_starts_as_max_denoise(kind):
    """--rng comfy's parameterisation (Eps/V .comfy()) vs ComfyUI's ModelSamplingDiscrete and KSampler start."""
    from sdcli.sampling.parameterisation import Eps, V
    from sdcli.sampling.schedules import ModelSigmas, alphas_cumprod

    ours = (V if kind == "v" else Eps)(ModelSigmas(alphas_cumprod(SD_CONFIG))).comfy()
    theirs = comfy_ref.DiscreteModelSampling(comfy_ref.discrete_sigmas())
    sigma = torch.tensor([14.6146, 7.3, 1.0, 0.5, 0.0292])
    torch.testing.assert_close(ours.sigma_to_t(sigma), theirs.timestep(sigma).float(), rtol=0, atol=0)
    _, _, x0, noise = _inputs()
    top, low = torch.tensor([float(theirs.sigma_max)]), torch.tensor([3.0])
    _close(ours.noise_scaling(top.reshape(-1, 1, 1, 1), noise), noise * (1 + top ** 2).sqrt())
    _close(ours.noise_scaling(low.reshape(-1, 1, 1, 1), noise, x0), x0 + noise * 3.0)
    plain = (V if kind == "v" else Eps)(ModelSigmas(alphas_cumprod(SD_CONFIG)))
    assert not torch.equal(plain.sigma_to_t(sigma), ours.sigma_to_t(sigma))  # the WebUI interpolates
