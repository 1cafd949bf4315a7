"""The WebUI API's read-only endpoints and /options: the WebUI's shapes (tests/reference/webui_api_shapes.py),
values from the server's real state, empty lists for kinds sdcli has none of, options applied from a table."""

from __future__ import annotations

import json

import pytest

from tests.reference.webui_api_shapes import EMBEDDING_ITEM, ITEMS, OBJECTS, SCRIPT_ARG, mismatches

TXT = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32, "sampler_name": "Euler a"}


@pytest.fixture
def bare(engine):
    """The app on a server without a models folder."""
    from fastapi.testclient import TestClient

    from sdcli.server.app import create_app

    engine.current = engine.models[0]
    return TestClient(create_app(engine))


@pytest.mark.parametrize("path", sorted(ITEMS))
def test_every_list_endpoint_has_the_webui_item_shape(api, bare, path):
    for client in (api, bare):
        response = client.get(f"/sdapi/v1/{path}")
        assert response.status_code == 200, (path, response.text)
        items = response.json()
        assert isinstance(items, list)
        for item in items:
            assert mismatches(item, ITEMS[path]) == [], (path, item)


@pytest.mark.parametrize("path", sorted(OBJECTS))
def test_object_endpoints_have_the_webui_shape(api, bare, path):
    for client in (api, bare):
        body = client.get(f"/sdapi/v1/{path}").json()
        assert mismatches(body, OBJECTS[path]) == []


def test_the_shape_check_can_fail():
    assert mismatches({"name": "x", "model_name": None}, ITEMS["sd-vae"]) == [
        "missing filename", "extra name", "model_name: null is not str"]
    assert mismatches({"name": "x", "extra": 1}, ITEMS["latent-upscale-modes"]) == ["extra extra"]


def test_lists_come_from_the_models_folder(api, webui_models):
    upscalers = api.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in upscalers] == ["Lanczos", "Nearest", "None", "4x-tiny"]
    assert upscalers[-1]["scale"] == 4 and upscalers[-1]["model_path"].endswith("4x-tiny.safetensors")
    assert [m["name"] for m in api.get("/sdapi/v1/latent-upscale-modes").json()][:2] == [
        "Latent", "Latent (antialiased)"]
    assert api.get("/sdapi/v1/sd-vae").json() == [{"model_name": "tinyvae.safetensors",
                                                   "filename": str(webui_models / "VAE" / "tinyvae.safetensors")}]
    assert [m["model_name"] for m in api.get("/sdapi/v1/sd-modules").json()] == ["tinyvae.safetensors"]
    loras = api.get("/sdapi/v1/loras").json()
    assert sorted(lora["name"] for lora in loras) == ["detail", "painterly", "textonly"]
    assert all(lora["alias"] and lora["path"].endswith(".safetensors") for lora in loras)
    embeddings = api.get("/sdapi/v1/embeddings").json()
    assert embeddings["loaded"] == {"tinyemb": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                                "shape": 32, "vectors": 2}}
    assert list(embeddings["skipped"]) == ["old"]
    for item in embeddings["loaded"].values():
        assert mismatches(item, EMBEDDING_ITEM) == []


def test_kinds_sdcli_lacks_are_empty_lists_and_refresh_answers(api, bare):
    for path in ("hypernetworks", "face-restorers", "realesrgan-models", "extensions"):
        assert api.get(f"/sdapi/v1/{path}").json() == []
    for path in ("sd-vae", "sd-modules", "loras", "prompt-styles"):
        assert bare.get(f"/sdapi/v1/{path}").json() == []
    assert bare.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    for path in ("refresh-checkpoints", "refresh-vae", "refresh-loras"):
        response = api.post(f"/sdapi/v1/{path}")
        assert response.status_code == 200 and response.json() is None


def test_memory_reports_this_process(api):
    ram = api.get("/sdapi/v1/memory").json()["ram"]
    assert 0 < ram["used"] < ram["total"]


def test_cmd_flags_from_the_server_state(api, webui_models):
    flags = api.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["port"] == 7861 and flags["listen"] is False
    assert flags["lora_dir"] == str(webui_models / "Lora") and flags["api_auth"] is None


def test_script_info_shape(api):
    info = api.get("/sdapi/v1/script-info").json()
    assert info
    for script in info:
        for arg in script["args"]:
            assert mismatches(arg, SCRIPT_ARG) == [], (script["name"], arg)
    names = {s["name"] for s in info}
    assert set(api.get("/sdapi/v1/scripts").json()["img2img"]) <= names


def test_options_get_reports_the_real_state(api, folder_engine):
    options = api.get("/sdapi/v1/options").json()
    model = folder_engine.models[0]
    assert options["sd_model_checkpoint"] == model.title and options["sd_checkpoint_hash"] == model.hash
    assert options["sd_vae"] == "Automatic" and options["CLIP_stop_at_last_layers"] == 1
    assert options["samples_format"] == "png" and options["send_seed"] is True
    assert options["eta_noise_seed_delta"] == 0 and options["randn_source"] == "CPU"


def test_options_post_partial_then_whole_echo(api, folder_engine):
    """The WebUI's own test: flip send_seed and read it back; then post the whole echo with one change."""
    before = api.get("/sdapi/v1/options").json()
    response = api.post("/sdapi/v1/options", json={"send_seed": not before["send_seed"]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() is None
    assert api.get("/sdapi/v1/options").json()["send_seed"] is (not before["send_seed"])
    echo = {**api.get("/sdapi/v1/options").json(), "sd_model_checkpoint": folder_engine.models[1].title,
            "no_such_option": 3, "sd_checkpoint_hash": "0123456789"}
    assert api.post("/sdapi/v1/options", json=echo).status_code == 200
    after = api.get("/sdapi/v1/options").json()
    assert after["sd_model_checkpoint"] == folder_engine.models[1].title
    assert after["sd_checkpoint_hash"] == folder_engine.models[1].hash  # read-only: follows the model
    assert "no_such_option" not in after


@pytest.mark.parametrize("values, detail", [
    ({"CLIP_stop_at_last_layers": 13}, "CLIP_stop_at_last_layers: 13 is out of range; use 1 to 12"),
    ({"CLIP_stop_at_last_layers": "two"}, "CLIP_stop_at_last_layers: 'two' is not a valid value"),
    ({"randn_source": "TPU"}, "randn_source: unknown value 'tpu'"),
    ({"sd_vae": "missing"}, "sd_vae: no vae named 'missing'"),
    ({"sd_model_checkpoint": "nope"}, "sd_model_checkpoint: model 'nope' is not served here"),
])
def test_bad_option_values_are_refused_and_nothing_applied(api, values, detail):
    response = api.post("/sdapi/v1/options", json={"send_seed": False, **values})
    assert response.status_code == 422 and detail in response.json()["detail"], response.text
    assert api.get("/sdapi/v1/options").json()["send_seed"] is True  # checked before anything applied


def test_options_reach_the_request_and_overrides_are_restored(api):
    def infotext(**payload):
        body = api.post("/sdapi/v1/txt2img", json={**TXT, **payload})
        assert body.status_code == 200, body.text
        return json.loads(body.json()["info"])["infotexts"][0]

    plain = infotext()
    assert "ENSD" not in plain and "Clip skip" not in plain
    overridden = infotext(override_settings={"eta_noise_seed_delta": 31337, "CLIP_stop_at_last_layers": 2,
                                             "randn_source": "GPU", "eta_ancestral": 0.5})
    assert "ENSD: 31337" in overridden and "Clip skip: 2" in overridden and "RNG: GPU" in overridden
    assert "Eta: 0.5" in overridden
    assert infotext() == plain  # restored afterwards
    kept = infotext(override_settings={"CLIP_stop_at_last_layers": 2}, override_settings_restore_afterwards=False)
    assert "Clip skip: 2" in kept and api.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    assert "Clip skip: 2" in infotext()
    assert api.post("/sdapi/v1/options", json={"emphasis": "No norm"}).status_code == 200
    assert "Emphasis: No norm" in infotext(prompt="a (lighthouse:1.3)")
    refused = api.post("/sdapi/v1/txt2img", json={**TXT, "override_settings": {"eta_noise_seed_delta": -1}})
    assert refused.status_code == 422 and "override_settings.eta_noise_seed_delta: -1" in refused.json()["detail"]
