"""The running job seen from outside, on a real loopback server (uvicorn in a thread, the session's tiny model):
/progress with its live preview, /skip, /interrupt, the bounded queue (503 + Retry-After) and a client that
goes away. Steps are slowed by a sleep in the step callback so a poll lands inside a job."""

import json
import threading
import time

import httpx
import numpy as np
import pytest

from sdcli.io.metadata import parse_infotext
from tests.server.conftest import decode
from tests.server.serving import in_thread

STEP_S = 0.03
BASE = {"prompt": "a lighthouse", "steps": 8, "seed": 40, "width": 64, "height": 64, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def live(tiny_model, tiny_pipe):
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    engine = Engine.from_specs([str(tiny_model)], RuntimeOptions(), load=lambda ref, plan: tiny_pipe, queue_size=3)
    with in_thread(create_app(engine, limits=Limits(max_pixels=64 * 64, max_images=32))) as url:
        yield url, engine


@pytest.fixture
def slow(live, monkeypatch):
    """Each sampling step takes STEP_S longer; the server's options restored after."""
    url, engine = live
    step = engine._step
    monkeypatch.setattr(engine, "_step", lambda s, t: (time.sleep(STEP_S), step(s, t))[1])
    options = dict(engine.options)
    yield url, engine
    engine.options.clear()
    engine.options.update(options)


class Background:
    """A POST in a thread; .result() waits (bounded) for its response."""

    def __init__(self, url, payload, path="/sdapi/v1/txt2img", timeout=60.0):
        self.response = None
        self.thread = threading.Thread(target=self._run, args=(url + path, payload, timeout), daemon=True)
        self.thread.start()

    def _run(self, url, payload, timeout):
        try:
            self.response = httpx.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            self.response = exc

    def result(self):
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "the request did not finish"
        return self.response


def progress(url, **params):
    return httpx.get(url + "/sdapi/v1/progress", params=params, timeout=10).json()


def wait_until(url, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = progress(url, skip_current_image=True)
        if check(body):
            return body
        time.sleep(0.01)
    pytest.fail(f"progress never matched; last: {body}")


def images_by_seed(response):
    """Each image by the seed its infotext records (all_seeds lists every image asked for, made or not)."""
    info = json.loads(response.json()["info"])
    seeds = [int(parse_infotext(text)[2]["Seed"]) for text in info["infotexts"]]
    return {seed: np.asarray(decode(data)) for seed, data in zip(seeds, response.json()["images"], strict=True)}


@pytest.fixture(scope="module")
def alone(live):
    """Three images (seeds 40, 41, 42) made one request at a time, with no interference."""
    url, _ = live
    return images_by_seed(httpx.post(url + "/sdapi/v1/txt2img", json={**BASE, "n_iter": 3}, timeout=60))


def test_progress_of_a_running_job_with_a_live_preview(slow):
    url, engine = slow
    engine.options["show_progress_every_n_steps"] = 1
    job = Background(url, {**BASE, "n_iter": 2})
    body = wait_until(url, lambda b: b["state"]["sampling_step"] >= 2)
    state = body["state"]
    assert state["job_count"] == 2 and state["sampling_steps"] == 8 and state["job"].startswith("Batch ")
    assert 0 < body["progress"] < 1 and body["eta_relative"] >= 0
    assert "sampling step" in body["textinfo"] and body["current_image"] is None  # skip_current_image
    first = progress(url)
    preview = decode(first["current_image"])
    assert preview.format == "PNG" and preview.size == (8, 8)  # one pixel per latent cell
    wait_until(url, lambda b: b["state"]["sampling_step"] >= first["state"]["sampling_step"] + 2
               or b["state"]["job_no"] > first["state"]["job_no"])
    later = progress(url)["current_image"]
    assert later is not None and later != first["current_image"]  # every step: a newer latent, a new preview
    assert job.result().status_code == 200
    idle = progress(url)
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None


def test_previews_are_decoded_every_n_steps_and_only_when_polled(slow, monkeypatch):
    from sdcli.families.latent import LatentFormat

    url, engine = slow
    calls = []
    decode_preview = LatentFormat.preview
    monkeypatch.setattr(LatentFormat, "preview", lambda self, latent: calls.append(1) or decode_preview(self, latent))
    assert Background(url, {**BASE, "n_iter": 1}).result().status_code == 200
    assert calls == []  # nobody polled: the step callback decoded nothing
    engine.options["show_progress_every_n_steps"] = 100
    job = Background(url, {**BASE, "n_iter": 2})
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 1)
    first = progress(url)["current_image"]
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 5 or b["state"]["job_no"] >= 1)
    assert progress(url)["current_image"] == first and len(calls) == 1  # not due yet: the same preview
    engine.options["live_previews_enable"] = False
    job.result()
    job = Background(url, {**BASE, "n_iter": 1})
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 1)
    assert progress(url)["current_image"] is None
    job.result()


def test_skip_returns_the_running_batch_half_done_and_goes_on(slow, alone, monkeypatch):
    url, engine = slow
    step = engine._step

    def held(done, total):  # the first batch waits at its step 3 (bounded) until the skip has come
        deadline = time.monotonic() + 10
        while engine.progress.job_no == 0 and done == 3 and not engine.progress.skipped and time.monotonic() < deadline:
            time.sleep(0.01)
        step(done, total)

    monkeypatch.setattr(engine, "_step", held)
    job = Background(url, {**BASE, "n_iter": 3})
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 2)
    assert httpx.post(url + "/sdapi/v1/skip", timeout=10).json() == {}
    response = job.result()
    assert response.status_code == 200
    got = images_by_seed(response)
    assert set(got) == set(alone)  # every batch has its image, as the WebUI's
    skipped = [seed for seed in got if not np.array_equal(got[seed], alone[seed])]
    assert skipped == [40]  # the one that was running: its latest denoised latent decoded; the rest as alone


def test_interrupt_stops_the_job_and_returns_the_running_batch_half_done(slow, alone, monkeypatch):
    url, engine = slow
    step = engine._step

    def held(done, total):  # the second batch waits at its step 3 (bounded) until the interrupt has come
        deadline = time.monotonic() + 10
        while (engine.progress.job_no == 1 and done == 3 and not engine.progress.interrupted
               and time.monotonic() < deadline):
            time.sleep(0.01)
        step(done, total)

    monkeypatch.setattr(engine, "_step", held)
    job = Background(url, {**BASE, "n_iter": 3})
    wait_until(url, lambda b: b["state"]["job_no"] >= 1 and b["state"]["sampling_step"] >= 2)
    assert httpx.post(url + "/sdapi/v1/interrupt", timeout=10).json() == {}
    got = images_by_seed(job.result())
    assert sorted(got) == [40, 41]  # the third batch never starts
    assert np.array_equal(got[40], alone[40])  # the finished batch
    assert not np.array_equal(got[41], alone[41]) and got[41].std() > 0  # the running one, half done
    assert progress(url)["state"]["interrupted"] is True  # as the WebUI's state after an interrupt


def test_a_full_queue_answers_503_with_retry_after(slow):
    url, engine = slow
    jobs = [Background(url, {**BASE, "steps": 12})]
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 1)  # one job done first: Retry-After has a time
    jobs[0].result()
    jobs = [Background(url, {**BASE, "steps": 12}) for _ in range(3)]
    deadline = time.monotonic() + 30
    while engine.waiting < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = httpx.post(url + "/sdapi/v1/txt2img", json=BASE, timeout=10)
    assert refused.status_code == 503 and "queue is full (3 requests)" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert all(job.result().status_code == 200 for job in jobs)


def test_a_client_that_goes_away_frees_its_slot(slow):
    url, engine = slow
    full_job_s = 16 * 20 * STEP_S  # what the job would take to the end
    gone = Background(url, {**BASE, "steps": 20, "n_iter": 16}, timeout=1.0)  # the client gives up after 1 s
    assert isinstance(gone.result(), httpx.TimeoutException)
    started = time.monotonic()
    wait_until(url, lambda b: b["state"]["job_count"] == 0, timeout=full_job_s)
    assert time.monotonic() - started < full_job_s / 3  # cancelled at a step, not run to the end
    assert engine.waiting == 0
    assert httpx.post(url + "/sdapi/v1/txt2img", json=BASE, timeout=30).status_code == 200


def test_a_waiting_client_that_goes_away_leaves_the_queue(slow):
    url, engine = slow
    running = Background(url, {**BASE, "steps": 10, "n_iter": 3})
    wait_until(url, lambda b: b["state"]["sampling_step"] >= 1)
    waiting = Background(url, BASE, timeout=0.5)  # gives up while queued behind the running job
    assert isinstance(waiting.result(), httpx.TimeoutException)
    deadline = time.monotonic() + 5
    while engine.waiting > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.waiting == 1 and progress(url)["state"]["job_count"] == 3  # left while the first still runs
    assert running.result().status_code == 200
