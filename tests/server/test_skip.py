"""/skip as the WebUI does it: the running batch's sampling ends at once, the batch's images are decoded from its
latest denoised latent (half-denoised) and returned with their infotexts, and the next batches run as they would
have. Deterministic: the skip is sent from inside a chosen step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdcli.sampling.preview import StopSampling
from tests.server.conftest import decode

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
