"""The WebUI API in-process: shapes, pixels equal to sdcli's core, errors in the WebUI's shapes."""

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from tests.server.conftest import b64png, decode

TXT = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 7, "steps": 2, "width": 32, "height": 32,
       "sampler_name": "Euler a", "batch_size": 2, "cfg_scale": 6.5}


def core_pixels(pipe, **fields):
    request = GenerationRequest(**fields)
    return [np.asarray(i.image) for i in run(request, pipe, validate(request), model_name="m", model_hash="0" * 10)]


def test_txt2img_shapes_and_pixels_match_the_core(client, tiny_pipe, single_thread):
    response = client.post("/sdapi/v1/txt2img", json=TXT)
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and info["sampler_name"] == "Euler a"
    assert info["cfg_scale"] == 6.5 and info["negative_prompt"] == "fog" and len(info["infotexts"]) == 2
    assert body["parameters"]["prompt"] == "a lighthouse" and body["parameters"]["n_iter"] == 1
    images = [decode(x) for x in body["images"]]
    prompt, negative, params = parse_infotext(images[1].info["parameters"])
    assert (prompt, negative, params["Seed"], params["Size"]) == ("a lighthouse", "fog", "8", "32x32")
    expected = core_pixels(tiny_pipe, prompt="a lighthouse", negative_prompt="fog", seed=7, steps=2, width=32,
                           height=32, sampler="Euler a", batch_size=2, cfg_scale=6.5)
    for image, want in zip(images, expected, strict=True):
        assert np.array_equal(np.asarray(image.convert("RGB")), want)


def test_txt2img_hires_fix_matches_the_core(client, tiny_pipe, single_thread):
    """enable_hr + hr_* run sdcli's hires pass: the WebUI's keys in the infotext, the core's pixels."""
    from sdcli.request.hires import HiresSettings

    payload = {**TXT, "batch_size": 1, "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Lanczos",
               "hr_second_pass_steps": 2, "denoising_strength": 0.6, "hr_sampler_name": "Use same sampler",
               "hr_prompt": ""}
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 200, response.text
    image = decode(response.json()["images"][0])
    assert image.size == (64, 64)
    _, _, params = parse_infotext(image.info["parameters"])
    assert (params["Size"], params["Hires upscale"], params["Hires upscaler"], params["Hires steps"],
            params["Denoising strength"]) == ("32x32", "2", "Lanczos", "2", "0.6")
    assert "Hires sampler" not in params and "Hires prompt" not in params
    expected = core_pixels(tiny_pipe, prompt="a lighthouse", negative_prompt="fog", seed=7, steps=2, width=32,
                           height=32, sampler="Euler a", cfg_scale=6.5,
                           hires=HiresSettings(scale=2, steps=2, denoise=0.6, upscaler="Lanczos"))
    assert np.array_equal(np.asarray(image.convert("RGB")), expected[0])


def test_clip_skip_override_and_random_seed(client):
    body = client.post("/sdapi/v1/txt2img", json={**TXT, "batch_size": 1, "seed": -1,
                                                  "override_settings": {"CLIP_stop_at_last_layers": 2}}).json()
    info = json.loads(body["info"])
    assert info["clip_skip"] == 2 and 0 <= info["seed"] < 2**32
    assert "Clip skip: 2" in info["infotexts"][0]


def test_img2img_inpaint_and_outpaint(client):
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    base = {**TXT, "batch_size": 1, "init_images": [b64png(image)], "denoising_strength": 0.5, "steps": 4}
    plain = client.post("/sdapi/v1/img2img", json=base)
    assert plain.status_code == 200, plain.text
    assert json.loads(plain.json()["info"])["denoising_strength"] == 0.5
    assert plain.json()["parameters"]["init_images"] is None  # include_init_images false, as the WebUI
    inpaint = client.post("/sdapi/v1/img2img", json={**base, "mask": "data:image/png;base64," + b64png(mask),
                                                     "inpainting_fill": 1, "inpaint_full_res": False})
    assert inpaint.status_code == 200, inpaint.text
    text = json.loads(inpaint.json()["info"])["infotexts"][0]
    assert "Mask blur: 4" in text and "Inpaint area: Whole picture" in text
    out = decode(inpaint.json()["images"][0]).convert("RGB")
    # Outside the blurred mask the input shows through: the far corner, 6+ px from the mask's edge
    # (a mask blur of 4 still reaches a few pixels nearer).
    corner = np.asarray(out)[:2, :2]
    assert np.abs(corner.astype(int) - [200, 30, 30]).max() <= 2
    outpaint = client.post("/sdapi/v1/img2img", json={**base, "script_name": "Poor man's outpainting",
                                                      "script_args": [16, 4, 1, ["left"]]})
    assert outpaint.status_code == 200, outpaint.text
    assert decode(outpaint.json()["images"][0]).size == (48, 32)


def test_lists_options_and_model_switch(client, engine):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral", "euler_ancestral"],
            "options": {}} in samplers
    schedulers = client.get("/sdapi/v1/schedulers").json()
    assert {s["name"] for s in schedulers} >= {"automatic", "karras", "sgm_uniform"}
    # ComfyUI's Flux2Scheduler, Flux.2's default, as the WebUI lists a scheduler entry
    assert {"name": "flux2", "label": "Flux2", "aliases": None, "default_rho": -1,
            "need_inner_model": False} in schedulers
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["tiny-sd1", "tiny-sd1-inpaint"]
    assert models[0]["title"] == f"tiny-sd1 [{models[0]['hash']}]"
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == models[0]["title"]
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": models[1]["title"]}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == models[1]["title"]
    refused = client.post("/sdapi/v1/txt2img", json={**TXT, "batch_size": 1})  # a 9-channel UNet cannot
    assert refused.status_code == 422 and "txt2img needs a UNet with 4 input channels" in refused.json()["detail"]
    override = {"override_settings": {"sd_model_checkpoint": "tiny-sd1"}, "batch_size": 1}
    info = json.loads(client.post("/sdapi/v1/txt2img", json={**TXT, **override}).json()["info"])
    assert info["sd_model_name"] == "tiny-sd1"
    missing = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert missing.status_code == 422 and "model 'nope' is not served here" in missing.json()["detail"]


def test_png_info_round_trip(client):
    image = client.post("/sdapi/v1/txt2img", json={**TXT, "batch_size": 1}).json()["images"][0]
    body = client.post("/sdapi/v1/png-info", json={"image": image}).json()
    assert body["parameters"]["Prompt"] == "a lighthouse" and body["parameters"]["Seed"] == "7"
    assert body["info"].startswith("a lighthouse\nNegative prompt: fog\n")
    assert client.post("/sdapi/v1/png-info", json={"image": b64png(Image.new("RGB", (4, 4)))}).json()["info"] == ""


def test_progress_idle_and_interrupt(client):
    assert client.get("/sdapi/v1/progress").json()["progress"] == 0
    assert client.post("/sdapi/v1/interrupt").json() == {}


@pytest.mark.parametrize("payload, status, detail", [
    ({"steps": "many"}, 422, None),  # FastAPI's own validation shape
    ({"sampler_name": "Nope"}, 422, "unknown sampler 'Nope'"),
    ({"enable_hr": True, "hr_scale": 2.5}, 422, "80x80 is over this server's limit of 4096 pixels"),
    ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, 422, "hr_upscaler: 'R-ESRGAN 4x+' is not a built-in"),
    ({"width": 128, "height": 128}, 422, "over this server's limit of 4096 pixels"),
    ({"batch_size": 3, "n_iter": 2}, 422, "6 images is over this server's limit of 4"),
    ({"width": 33}, 422, "width: 33 is not a multiple of 8"),
    ({"script_name": "loopback"}, 422, "script 'loopback' is not supported"),
])
def test_bad_requests_get_422_never_a_crash(client, payload, status, detail):
    response = client.post("/sdapi/v1/txt2img", json={**TXT, **payload})
    assert response.status_code == status
    body = response.json()
    if detail is None:
        assert body["detail"][0]["loc"] == ["body", "steps"]
    else:
        assert body["error"] == "UsageError" and detail in body["detail"]


def test_bad_images_and_bodies(client):
    bad = client.post("/sdapi/v1/img2img", json={**TXT, "init_images": ["bm90IGFuIGltYWdl"]})
    assert bad.status_code == 422 and "init_images[0] is not a PNG, JPEG or WebP image" in bad.json()["detail"]
    assert "/tmp" not in bad.json()["detail"]
    none = client.post("/sdapi/v1/img2img", json=TXT)
    assert none.status_code == 422 and "init_images" in none.json()["detail"]
    big = client.post("/sdapi/v1/txt2img", content=b"{" + b" " * (2 << 20) + b"}",
                      headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"] == "HTTPException"
    assert client.post("/sdapi/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422


def test_basic_auth(engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import create_app

    client = TestClient(create_app(engine, auth={"me": "secret"}))
    assert client.get("/sdapi/v1/samplers").status_code == 401
    assert client.get("/sdapi/v1/samplers", auth=("me", "wrong")).status_code == 401
    assert client.get("/sdapi/v1/samplers", auth=("me", "secret")).status_code == 200


def test_one_job_at_a_time_and_full_queue_is_503(client, engine):
    import threading

    order = []
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with engine._slot():
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second():
        with engine._slot():
            order.append("second in")

    engine.queue_size = 2
    a = threading.Thread(target=hold)
    a.start()
    assert inside.wait(10)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.3)
    assert order == ["first in"]  # the second waits for the lock
    saved, engine.queue_size = engine.queue_size, engine._waiting
    try:
        full = client.post("/sdapi/v1/txt2img", json=TXT)
        assert full.status_code == 503 and "queue is full" in full.json()["detail"]
    finally:
        engine.queue_size = saved
        release.set()
        a.join(10)
        b.join(10)
    assert order == ["first in", "first out", "second in"]


def test_tiling_field_and_no_leak_into_the_next_request(client, tiny_pipe, single_thread):
    settings = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 7, "steps": 2, "width": 32, "height": 32,
                "sampler": "Euler a", "batch_size": 2, "cfg_scale": 6.5}
    fresh = core_pixels(tiny_pipe, **settings)  # before any tiling job on this loaded model
    tiled = client.post("/sdapi/v1/txt2img", json={**TXT, "tiling": True})
    assert tiled.status_code == 200, tiled.text
    assert "Tiling: True" in json.loads(tiled.json()["info"])["infotexts"][0]
    images = [np.asarray(decode(x).convert("RGB")) for x in tiled.json()["images"]]
    for image, want, plain in zip(images, core_pixels(tiny_pipe, **settings, tiling=True), fresh, strict=True):
        assert np.array_equal(image, want) and not np.array_equal(image, plain)
    after = client.post("/sdapi/v1/txt2img", json=TXT)  # the same loaded model, next request: no tiling left
    assert "Tiling" not in json.loads(after.json()["info"])["infotexts"][0]
    for data, want in zip(after.json()["images"], fresh, strict=True):
        assert np.array_equal(np.asarray(decode(data).convert("RGB")), want)
    read = client.post("/sdapi/v1/png-info", json={"image": tiled.json()["images"][0]}).json()
    assert read["parameters"]["Tiling"] == "True"


def test_the_server_keeps_encodings_across_requests(client, tiny_pipe, monkeypatch):
    """Two API requests sharing a negative prompt: the second encodes only its own prompt."""
    encoder, calls = tiny_pipe.pipe.text_encoder, []
    real = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    tiny_pipe.encodings.clear()
    body = {"negative_prompt": "fog, blur", "seed": 7, "steps": 2, "width": 32, "height": 32}
    first = client.post("/sdapi/v1/txt2img", json={**body, "prompt": "a lighthouse"})
    assert first.status_code == 200, first.text
    assert len(calls) == 3  # "", the prompt, the negative
    second = client.post("/sdapi/v1/txt2img", json={**body, "prompt": "a harbour"})
    assert second.status_code == 200, second.text
    assert len(calls) == 4
    tiny_pipe.encodings.clear()
