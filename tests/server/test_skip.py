"""/skip and /interrupt as the WebUI does them: the running batch's sampling ends at once, the batch's images are
decoded from its latest denoised latent (half-denoised) and returned with their infotexts; after a skip the next
batches run as they would have, after an interrupt none runs (nor the batch's hires pass). Deterministic: the
skip or interrupt is sent from inside a chosen step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdcli.sampling.preview import StopSampling
from tests.server.conftest import decode, interrupt_at

pytestmark = pytest.mark.slow  # a few generations each, 1-3 s

BASE = {"prompt": "a lighthouse", "negative_prompt": "fog", "steps": 6, "seed": 30, "width": 32, "height": 32,
        "batch_size": 1, "n_iter": 3, "cfg_scale": 6}


def images(response):
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    return info, [np.asarray(decode(data).convert("RGB")) for data in response.json()["images"]]


def skip_at(engine, monkeypatch, batch: int, step: int):
    """/skip sent while batch `batch` (0-based) runs its step `step` (the engine's step callback)."""
    original = engine._step

    def step_and_skip(done, total):
        if engine.progress.job_no == batch and done == step:
            engine.skip()
        original(done, total)

    monkeypatch.setattr(engine, "_step", step_and_skip)


def stopped_at(pipe, sampler: str, seed: int, step: int):
    """The image of `seed` run by sdcli's core with its sampling stopped from the step callback at `step`."""
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, validate

    def on_step(done, total):
        if done == step:
            raise StopSampling

    request = GenerationRequest(prompt="a lighthouse", negative_prompt="fog", steps=6, seed=seed, width=32,
                                height=32, sampler=sampler, cfg_scale=6)
    return [np.asarray(i.image) for i in run(request, pipe, validate(request), model_name="m", model_hash="0" * 10,
                                             on_step=on_step)]


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM", "UniPC"])  # k-diffusion, timesteps, diffusers' pipeline
def test_a_skipped_batch_comes_back_half_denoised(client, engine, tiny_pipe, monkeypatch, sampler, single_thread):
    payload = {**BASE, "sampler_name": sampler}
    info, full = images(client.post("/sdapi/v1/txt2img", json=payload))
    skip_at(engine, monkeypatch, batch=1, step=2)
    skipped_info, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(got) == 3 and skipped_info["all_seeds"] == info["all_seeds"] == [30, 31, 32]
    assert skipped_info["infotexts"] == info["infotexts"]  # the same records: what was asked for
    assert np.array_equal(got[0], full[0]) and np.array_equal(got[2], full[2])  # the batches before and after
    assert not np.array_equal(got[1], full[1]) and got[1].std() > 0  # the skipped one: not left out, not finished
    assert np.array_equal(got[1], stopped_at(tiny_pipe, sampler, 31, 2)[0])  # decoded from step 2's latent
    assert client.get("/sdapi/v1/progress").json()["state"]["skipped"] is False  # cleared with its batch


def test_a_skip_after_the_last_step_of_a_batch_is_cleared_as_the_next_starts(client, engine, monkeypatch):
    payload = {**BASE, "sampler_name": "Euler", "n_iter": 2}
    _, full = images(client.post("/sdapi/v1/txt2img", json=payload))
    skip_at(engine, monkeypatch, batch=0, step=6)  # the batch's last step: nothing is left to skip
    _, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert all(np.array_equal(a, b) for a, b in zip(got, full, strict=True))


@pytest.mark.parametrize("sampler", ["Euler a", "UniPC"])  # sdcli's loop, diffusers' pipeline
def test_an_interrupt_returns_the_finished_batches_and_the_running_one_half_denoised(
        client, engine, tiny_pipe, monkeypatch, sampler, single_thread):
    payload = {**BASE, "sampler_name": sampler}
    info, full = images(client.post("/sdapi/v1/txt2img", json=payload))
    calls = interrupt_at(engine, monkeypatch, batch=1, step=2)
    stopped_info, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(got) == 2 and stopped_info["all_seeds"] == [30, 31, 32]  # every image asked for, as the WebUI's
    assert calls[-1] == (1, 2)  # the third batch never starts
    assert stopped_info["infotexts"] == info["infotexts"][:2]
    assert np.array_equal(got[0], full[0])  # the finished batch
    assert not np.array_equal(got[1], full[1]) and got[1].std() > 0  # the running one: not dropped, not finished
    assert np.array_equal(got[1], stopped_at(tiny_pipe, sampler, 31, 2)[0])  # decoded from step 2's latent
    assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is True  # as the WebUI's, until the next
    _, again = images(client.post("/sdapi/v1/txt2img", json={**payload, "n_iter": 1}))
    assert np.array_equal(again[0], full[0])  # the next job runs whole


def test_an_interrupt_returns_the_whole_running_batch(client, engine, monkeypatch, single_thread):
    payload = {**BASE, "sampler_name": "Euler a", "batch_size": 2, "n_iter": 2}
    _, full = images(client.post("/sdapi/v1/txt2img", json=payload))
    interrupt_at(engine, monkeypatch, batch=0, step=3)
    info, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(got) == 2 and info["all_seeds"] == [30, 31, 32, 33] and len(info["infotexts"]) == 2
    assert all(not np.array_equal(a, b) and a.std() > 0 for a, b in zip(got, full[:2], strict=True))


def test_an_interrupt_in_the_first_pass_leaves_out_the_hires_pass(client, engine, tiny_pipe, monkeypatch,
                                                                  single_thread):
    payload = {**BASE, "sampler_name": "Euler a", "n_iter": 1, "enable_hr": True, "hr_scale": 2,
               "hr_upscaler": "Latent", "denoising_strength": 0.5, "hr_second_pass_steps": 2}
    _, full = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert full[0].shape == (64, 64, 3)
    calls = interrupt_at(engine, monkeypatch, batch=0, step=2)
    _, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert calls == [(0, 1), (0, 2)]  # no hires step ran
    assert got[0].shape == (32, 32, 3)  # the first pass, as the WebUI returns it
    assert np.array_equal(got[0], stopped_at(tiny_pipe, "Euler a", 30, 2)[0])
    calls = interrupt_at(engine, monkeypatch, batch=0, step=1, nth=2)  # the hires pass's first step
    _, got = images(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(calls) == 6 + 1 and got[0].shape == (64, 64, 3)  # the hires pass, half done
    assert not np.array_equal(got[0], full[0]) and got[0].std() > 0
