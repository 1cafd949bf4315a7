"""Every `webuiapi` helper whose endpoint sdcli serves and that tests/server/test_e2e.py and test_controlnet_api.py
do not drive, against the app on a real loopback socket with a models folder (LoRAs, embeddings, a VAE, an ESRGAN
upscaler) and HTTP Basic auth: lists, options, refreshes, extras, skip, custom calls; and the clear error of each
one sdcli refuses (interrogate: 422; the WebUI's removed artists endpoints and the promptgen extension's: 404, as
the WebUI answers them)."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.server.serving import in_thread


@pytest.fixture(scope="module")
def url(folder_engine):
    from sdcli.server.app import Limits, create_app

    app = create_app(folder_engine, limits=Limits(max_pixels=128 * 128, max_images=4), auth={"me": "secret"},
                     flags={"listen": False, "port": 7861})
    with in_thread(app) as address:
        yield address


@pytest.fixture
def api(url, folder_engine):
    import webuiapi

    folder_engine.current = folder_engine.models[0]
    folder_engine.options.clear()
    host, port = url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), username="me", password="secret", sampler="Euler", steps=2)


def test_set_auth_before_and_after(url):
    import webuiapi

    host, port = url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port))  # its scripts check fails quietly without credentials
    assert api.get_sd_models()["detail"] == "Not authenticated"
    api.set_auth("me", "secret")
    assert [m["model_name"] for m in api.get_sd_models()] == ["tiny-sd1", "tiny-sd1-inpaint"]
    assert api.has_controlnet is False  # check_extensions ran: it looks for "controlnet m2m", a WebUI script


def test_lists(api, webui_models):
    assert {m["model_name"] for m in api.get_sd_models()} == {"tiny-sd1", "tiny-sd1-inpaint"}  # folder "tiny": served
    assert api.get_sd_vae() == [{"model_name": "tinyvae.safetensors",
                                 "filename": str(webui_models / "VAE" / "tinyvae.safetensors")}]
    upscalers = {u["name"]: u for u in api.get_upscalers()}
    assert {"None", "Lanczos", "Nearest", "4x-tiny"} <= set(upscalers) and upscalers["4x-tiny"]["scale"] == 4
    assert {"Latent", "Latent (bicubic)"} <= {m["name"] for m in api.get_latent_upscale_modes()}
    assert {lora["name"] for lora in api.get_loras()} == {"detail", "painterly", "textonly"}
    embeddings = api.get_embeddings()
    assert set(embeddings["loaded"]) == {"tinyemb"} and set(embeddings["skipped"]) == {"old"}
    assert embeddings["loaded"]["tinyemb"]["vectors"] == 2
    assert api.get_hypernetworks() == api.get_face_restorers() == api.get_realesrgan_models() == []
    assert api.get_prompt_styles() == []
    assert {"Euler", "Euler a", "DPM++ 2M"} <= {s["name"] for s in api.get_samplers()}
    assert {"karras", "exponential"} <= {s["name"] for s in api.get_schedulers()}
    scripts = api.get_scripts()
    assert "controlnet" in scripts["txt2img"] and "x/y/z plot" in scripts["img2img"]
    flags = api.get_cmd_flags()
    assert flags["api"] is True and flags["port"] == 7861 and flags["api_auth"] is None
    memory = api.get_memory()
    assert memory["ram"]["used"] > 0 and "cuda" in memory
    assert api.get_progress()["state"]["job_count"] == 0
    api.util_wait_for_ready(check_interval=0.01)  # idle: returns at once


def test_options_round_trip(api, folder_engine):
    options = api.get_options()
    assert options["sd_model_checkpoint"] == folder_engine.models[0].title and options["CLIP_stop_at_last_layers"] == 1
    assert api.set_options({"CLIP_stop_at_last_layers": 2, "samples_format": "jpg", "not_a_key": 1}) is None
    after = api.get_options()
    assert after["CLIP_stop_at_last_layers"] == 2 and after["samples_format"] == "jpg" and "not_a_key" not in after
    refused = api.set_options({"CLIP_stop_at_last_layers": 13})
    assert refused["detail"].startswith("CLIP_stop_at_last_layers: ") and api.get_options()[
        "CLIP_stop_at_last_layers"] == 2  # nothing applied
    api.util_set_model("tiny-sd1-inpaint")  # find_closest: the nearest title
    assert api.util_get_current_model() == folder_engine.models[1].title
    assert api.refresh_checkpoints() is None
    assert api.skip() == {} and api.interrupt() == {}


@pytest.mark.slow  # loads the ESRGAN upscaler
def test_extras(api):
    image = Image.new("RGB", (16, 12), (200, 40, 10))
    single = api.extra_single_image(image, upscaler_1="Lanczos", upscaling_resize=2)
    assert single.image.size == (32, 24) and "Postprocess upscaler: Lanczos" in single.info
    batch = api.extra_batch_images([image, image.transpose(Image.Transpose.ROTATE_90)], name_list=["a", "b"],
                                   resize_mode=1, upscaling_resize_w=24, upscaling_resize_h=24, upscaling_crop=True,
                                   upscaler_1="4x-tiny")
    assert [i.size for i in batch.images] == [(24, 24), (24, 24)]
    with pytest.raises(RuntimeError, match="codeformer_visibility"):
        api.extra_single_image(image, codeformer_visibility=0.5, upscaler_1="Lanczos")


@pytest.mark.slow  # one generation
def test_custom_calls(api):
    assert api.custom_get("controlnet/version") == {"version": 2}
    assert api.custom_get("schedulers", baseurl=True)[0]["name"] == "automatic"
    result = api.txt2img(prompt="a lighthouse", seed=3, width=32, height=32)
    info = api.custom_post("sdapi/v1/png-info", payload={"image": _b64(result.image)})
    assert info.info.startswith("a lighthouse\n") and info.json["parameters"]["Seed"] == "3"


def test_what_sdcli_refuses(api):
    with pytest.raises(RuntimeError) as refused:
        api.interrogate(Image.new("RGB", (8, 8)), model="clip")
    status, body = refused.value.args
    assert status == 422 and "model: 'clip': sdcli has no interrogator" in body
    # Gone from the WebUI too, and an extension sdcli has not: 404 with FastAPI's body, as the WebUI answers.
    assert api.get_artists() == api.get_artist_categories() == {"detail": "Not Found"}
    with pytest.raises(RuntimeError, match="404"):
        api.custom_post("promptgen/generate", payload={"text": "x"})


def _b64(image) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=_pnginfo(image))
    return base64.b64encode(buffer.getvalue()).decode()


def _pnginfo(image):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            info.add_text(key, value)
    return info
