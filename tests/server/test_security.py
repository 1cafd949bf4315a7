"""The server's security: it never opens a path a request names, --listen without --api-auth warns, --api-auth
compares in constant time (every user, any text), CORS only with --cors-allow-origins(-regex), and the
body, image and pixel limits."""

import base64
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdcli.models.runtime import RuntimeOptions
from sdcli.server.app import Limits, create_app
from sdcli.server.engine import Engine
from tests.server.conftest import b64png

BASE = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def guarded(tiny_model, tiny_pipe, server_models):
    """An app serving the tiny model with a models folder; every load is counted (a refusal loads nothing)."""
    loads = []
    engine = Engine.from_specs([str(tiny_model)], RuntimeOptions(), models_dir=str(server_models["root"]),
                               load=lambda ref, plan: loads.append(ref.path) or tiny_pipe)
    return TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64))), loads


def paths(server_models, name):
    """A relative path escaping the folder and an absolute one, both at real, loadable files outside it."""
    outside = server_models["elsewhere"]  # a valid upscaler file next to the models folder
    real = {"checkpoint": server_models["root"] / "Stable-diffusion" / "refiner-sf.safetensors"}.get(name, outside)
    return [f"../{outside.name}", str(real.resolve()), "~/" + outside.name]


FIELDS = {  # field -> (the payload with {value}, the start of the detail)
    "override_settings.sd_model_checkpoint": ({"override_settings": {"sd_model_checkpoint": "{value}"}},
                                              "sd_model_checkpoint: model '{value}' is not served here"),
    "override_settings.sd_vae": ({"override_settings": {"sd_vae": "{value}"}}, "override_settings.sd_vae: '{value}'"),
    "refiner_checkpoint": ({"refiner_checkpoint": "{value}"}, "refiner_checkpoint: '{value}' is a path"),
    "hr_upscaler": ({"enable_hr": True, "hr_scale": 2, "hr_upscaler": "{value}"}, "hr_upscaler: '{value}' is a path"),
    "prompt <lora:>": ({"prompt": "x <lora:{value}:1>"}, "prompt: <lora:{value}>: '{value}' is a path"),
    "controlnet model": ({"alwayson_scripts": {"controlnet": {"args": [{"model": "{value}", "image": "{image}"}]}}},
                        "alwayson_scripts.controlnet.args[0].model: '{value}' is not a ControlNet name"),
}


@pytest.mark.parametrize("field", FIELDS)
def test_no_request_field_opens_a_path(guarded, server_models, field):
    client, loads = guarded
    template, detail = FIELDS[field]
    image = b64png(Image.new("RGB", (32, 32)))
    for value in paths(server_models, "checkpoint" if "checkpoint" in field else field):
        payload = {**BASE, **eval_template(template, value, image)}
        response = client.post("/sdapi/v1/txt2img", json=payload)
        assert response.status_code == 422, (value, response.text)
        assert response.json()["detail"].startswith(detail.replace("{value}", value)), response.json()["detail"]
    assert loads == []  # refused before anything loads


def eval_template(template, value, image):
    import json

    return json.loads(json.dumps(template).replace("{value}", value).replace("{image}", image))


def test_options_and_the_native_endpoint_take_names_only(guarded, server_models):
    client, loads = guarded
    for value in paths(server_models, "checkpoint"):
        switched = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": value})
        assert switched.status_code == 422 and "is not served here" in switched.json()["detail"]
        vae = client.post("/sdapi/v1/options", json={"sd_vae": value})
        assert vae.status_code == 422 and vae.json()["detail"].startswith(f"sd_vae: '{value}' is a path")
    native = {"request": {"prompt": "x", "steps": 2, "width": 32, "height": 32, "seed": 1}}
    for key, flag in (("loras", "--lora"), ("embeddings", "--embedding"), ("vae", "--vae")):
        value = f"../{server_models['elsewhere'].name}"
        response = client.post("/sdcli/v1/generate", json={**native, key: value if key == "vae" else [value]})
        assert response.status_code == 422 and response.json()["detail"].startswith(f"{flag}: "), response.text
        assert "is a path" in response.json()["detail"]
    assert loads == []


def test_api_auth_compares_every_user_in_constant_time(engine, monkeypatch):
    import hmac

    client = TestClient(create_app(engine, auth={"me": "secret", "you": "pässwörd"}))
    assert client.get("/sdapi/v1/samplers", auth=("me", "secret")).status_code == 200
    assert client.get("/sdapi/v1/samplers", auth=("me", "Secret")).status_code == 401
    assert client.get("/sdapi/v1/samplers", auth=("you", "passw")).status_code == 401  # not a 500 on any text
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    response = client.get("/sdapi/v1/samplers", auth=("nobody", "x"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Basic"
    assert len(calls) == 4  # an unknown user costs the same comparisons as a known one: 2 per user


def test_cors_headers_only_for_the_allowed_origins(engine):
    asked = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    plain = TestClient(create_app(engine))
    assert "access-control-allow-origin" not in plain.get("/sdapi/v1/samplers", headers=asked).headers
    assert "access-control-allow-origin" not in plain.options("/sdapi/v1/txt2img", headers=asked).headers
    allowed = TestClient(create_app(engine, cors_origins=("https://ui.example",)))
    assert allowed.get("/sdapi/v1/samplers", headers=asked).headers["access-control-allow-origin"] == \
        "https://ui.example"
    preflight = allowed.options("/sdapi/v1/txt2img", headers=asked)
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://ui.example"
    other = {**asked, "Origin": "https://evil.example"}
    assert "access-control-allow-origin" not in allowed.get("/sdapi/v1/samplers", headers=other).headers
    regex = TestClient(create_app(engine, cors_origin_regex=r"https://.*\.ui\.example"))
    assert regex.get("/sdapi/v1/samplers", headers={"Origin": "https://a.ui.example"}).headers[
        "access-control-allow-origin"] == "https://a.ui.example"
    assert "access-control-allow-origin" not in regex.get("/sdapi/v1/samplers", headers=other).headers


@pytest.fixture
def no_serving(monkeypatch):
    """`sdcli serve` up to the point it would listen: the app it built, instead of serving it."""
    built = []
    monkeypatch.setattr("sdcli.server.live.serve", lambda app, engine, host, port: built.append((app, host)))
    return built


def test_listen_without_api_auth_warns(cli, tiny_model, no_serving):
    listening = cli("serve", "-m", tiny_model, "--listen")
    assert listening.exit_code == 0 and "warning: --listen without --api-auth" in listening.stderr
    assert no_serving[-1][1] == "0.0.0.0"
    guarded = cli("serve", "-m", tiny_model, "--listen", "--api-auth", "me:secret")
    assert guarded.exit_code == 0 and "warning" not in guarded.stderr
    local = cli("serve", "-m", tiny_model)
    assert local.exit_code == 0 and "warning" not in local.stderr and no_serving[-1][1] == "127.0.0.1"
    accented = cli("serve", "-m", tiny_model, "--api-auth", "me:pässwörd")
    assert accented.exit_code == 2 and "--api-auth: 'me:…' is not ASCII" in accented.stderr
    bad = cli("serve", "-m", tiny_model, "--cors-allow-origins-regex", "(")
    assert bad.exit_code == 2 and "--cors-allow-origins-regex: '(' is not a regular expression" in bad.stderr
    assert "loading" not in bad.stderr  # refused before the model loads


def test_body_image_and_pixel_limits(guarded):
    client, _ = guarded
    big = client.post("/sdapi/v1/txt2img", content=b"{" + b" " * (2 << 20) + b"}",
                      headers={"content-type": "application/json"})
    assert big.status_code == 413 and "over this server's limit of 1048576 bytes" in big.json()["detail"]
    pixels = client.post("/sdapi/v1/txt2img", json={**BASE, "width": 128, "height": 64})
    assert pixels.status_code == 422 and "128x64 is over this server's limit of 4096 pixels" in pixels.json()["detail"]
    # A small file of a huge image (a decompression bomb): refused from its header, never decoded.
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 1 << 20
    bomb = base64.b64encode(buffer.getvalue()).decode()
    response = client.post("/sdapi/v1/img2img", json={**BASE, "init_images": [bomb]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("init_images[0] is 9000x9000 pixels; the limit is")
