"""The ControlNet extension's API on `sdcli serve`: its routes, and alwayson_scripts units in the spellings
clients send, mapped onto sdcli's ControlNet units (pixels compared, not just status codes)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.server.conftest import b64png, decode


@pytest.fixture(scope="module")
def cn_models(tmp_path_factory):
    """A models folder whose ControlNet/ holds a tiny SD1 ControlNet (single file) and another (a folder)."""
    from sdcli.controlnet.files import build_tiny_controlnet

    root = tmp_path_factory.mktemp("cn-server") / "models"
    build_tiny_controlnet(root / "ControlNet" / "cn-canny.safetensors", "sd1", single_file=True)
    build_tiny_controlnet(root / "ControlNet" / "cn-other", "sd1", seed=1)
    return root


@pytest.fixture(scope="module")
def cn_client(tiny_model, tiny_pipe, cn_models):
    from fastapi.testclient import TestClient

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    engine = Engine.from_specs([str(tiny_model)], RuntimeOptions(), models_dir=str(cn_models),
                               load=lambda ref, plan: tiny_pipe)
    return TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=96 * 96)))


@pytest.fixture(scope="module")
def disc():
    """A 96x64 control image: a black disc on white (not square, so resize modes differ)."""
    image = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(image).ellipse((20, 8, 70, 56), fill="black")
    return b64png(image)


BASE = {"prompt": "a harbour", "steps": 3, "seed": 5, "width": 64, "height": 64, "sampler_name": "Euler"}


def txt2img(client, *units, status=200, **fields):
    payload = {**BASE, **fields}
    if units:
        payload["alwayson_scripts"] = {"ControlNet": {"args": list(units)}}
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def pixels(body):
    return np.asarray(decode(body["images"][0]), dtype=np.int16)


@pytest.fixture(scope="module")
def plain(cn_client):
    return pixels(txt2img(cn_client))


@pytest.fixture(scope="module")
def controlled(cn_client, disc):
    body = txt2img(cn_client, {"model": "cn-canny", "module": "none", "image": disc})
    return pixels(body), body


def test_routes_answer_with_the_extensions_shapes(cn_client):
    assert cn_client.get("/controlnet/version").json() == {"version": 2}
    models = cn_client.get("/controlnet/model_list").json()["model_list"]
    assert [m.split(" [")[0] for m in models] == ["cn-canny", "cn-other"]
    assert all(m.endswith("]") and len(m.split(" [")[1]) == 9 for m in models)  # name [8-hex legacy hash]
    modules = cn_client.get("/controlnet/module_list").json()
    assert "canny" in modules["module_list"] and "none" in modules["module_list"]
    canny = modules["module_detail"]["canny"]
    assert canny["model_free"] is True
    assert [s["value"] for s in canny["sliders"]] == [512, 100, 200]
    scripts = cn_client.get("/sdapi/v1/scripts").json()
    assert "controlnet" in scripts["txt2img"] and "controlnet" in scripts["img2img"]


def test_a_unit_steers_the_image_and_is_recorded_as_the_extension_does(plain, controlled):
    image, body = controlled
    assert np.abs(image - plain).max() > 0
    import json

    infotext = json.loads(body["info"])["infotexts"][0]
    assert 'ControlNet 0: "Module: none, Model: cn-canny [' in infotext
    assert "Resize Mode: Crop and Resize" in infotext  # the extension's default


@pytest.mark.parametrize("spelling", [
    {"resize_mode": 1}, {"resize_mode": "Crop and Resize"}, {"resize_mode": "Inner Fit (Scale to Fit)"},
    {"control_mode": "Balanced"}, {"control_mode": 0}, {"enabled": True, "low_vram": True, "hr_option": "Both"},
    {"module": "None"}, {"processor_res": -1, "threshold_a": -1, "threshold_b": -1},
], ids=str)
def test_the_spellings_clients_send_give_the_same_pixels(cn_client, disc, controlled, spelling):
    unit = {"model": "cn-canny [" + cn_client.get("/controlnet/model_list").json()["model_list"][0].split("[")[1],
            "module": "none", "image": disc, **spelling}
    assert np.array_equal(pixels(txt2img(cn_client, unit)), controlled[0])


def test_image_with_mask_and_legacy_input_image_are_the_same_unit(cn_client, disc, controlled):
    mask = b64png(Image.new("RGB", (96, 64), "white"))
    for unit in ({"image": {"image": disc, "mask": mask}}, {"image": [disc, mask]}, {"input_image": disc}):
        body = txt2img(cn_client, {"model": "cn-canny", "module": "none", **unit})
        assert np.array_equal(pixels(body), controlled[0]), unit


def test_resize_mode_control_mode_weight_and_module_change_the_image(cn_client, disc, controlled, plain):
    unit = {"model": "cn-canny", "module": "none", "image": disc}
    for change in ({"resize_mode": 0}, {"resize_mode": "Resize and Fill"}, {"control_mode": 2},
                   {"control_mode": "My prompt is more important"}, {"weight": 0.5}, {"module": "canny"},
                   {"model": "cn-other"}):
        assert not np.array_equal(pixels(txt2img(cn_client, {**unit, **change})), controlled[0]), change
    # Weight 0, a disabled unit and model "None" are no ControlNet at all: the plain image.
    for off in ({"weight": 0}, {"enabled": False}, {"model": "None"}, {"model": "none"}):
        assert np.array_equal(pixels(txt2img(cn_client, {**unit, **off})), plain), off


def test_img2img_units_default_to_the_input_image(cn_client, disc):
    payload = {**BASE, "init_images": [disc], "denoising_strength": 0.6}
    unit = {"model": "cn-canny", "module": "none"}
    run = lambda **scripts: pixels(cn_client.post("/sdapi/v1/img2img", json={**payload, **scripts}).json())  # noqa: E731
    given = run(alwayson_scripts={"controlnet": {"args": [{**unit, "image": disc}]}})
    assert np.array_equal(run(alwayson_scripts={"controlnet": {"args": [unit]}}), given)
    assert not np.array_equal(run(), given)


@pytest.mark.parametrize("unit, field, words", [
    ({"model": "../ControlNet/cn-canny.safetensors"}, "args[0].model", "not a ControlNet name"),
    ({"model": "/etc/passwd"}, "args[0].model", "not a ControlNet name"),
    ({"model": "missing"}, "args[].model", "no controlnet named 'missing'"),
    ({"model": "cn-canny", "resize_mode": 7}, "args[0].resize_mode", "0 ('Just Resize')"),
    ({"model": "cn-canny", "control_mode": "loud"}, "args[0].control_mode", "'Balanced'"),
    ({"model": "cn-canny", "weight": 3}, "args[0].weight", "use 0 to 2"),
    ({"model": "cn-canny", "guidance_start": 0.8, "guidance_end": 0.2}, "args[0].guidance_start", "above"),
    ({"model": "cn-canny", "module": "depth_midas"}, "args[0].module", "MiDaS"),
    ({"model": "cn-canny", "image": None}, "args[0].image", "control image"),
    ({"model": "cn-canny", "image": "bm90IGFuIGltYWdl"}, "args[0].image", "not a PNG"),
    ({"model": "cn-canny", "image": "{bomb}"}, "args[0].image", "is 9000x9000 pixels; the limit is"),
], ids=lambda v: str(v)[:40])
def test_bad_units_are_refused_naming_the_field(cn_client, disc, unit, field, words):
    unit = {"image": disc, **unit} if "image" not in unit else unit
    if unit["image"] == "{bomb}":  # a small file of a huge image: refused from its header, never decoded
        buffer = io.BytesIO()
        Image.new("1", (9000, 9000)).save(buffer, format="PNG")
        unit["image"] = base64.b64encode(buffer.getvalue()).decode()
    body = txt2img(cn_client, unit, status=422)
    assert body["detail"].startswith(f"alwayson_scripts.controlnet.{field}"), body["detail"]
    assert words in body["detail"]


def test_other_always_on_scripts_are_refused(cn_client):
    body = txt2img(cn_client, status=422, alwayson_scripts={"ADetailer": {"args": []}})
    assert body["detail"].startswith("alwayson_scripts:")


def test_detect_runs_the_preprocessor(cn_client, disc):
    run = lambda **body: cn_client.post("/controlnet/detect", json=body)  # noqa: E731
    canny = run(controlnet_module="canny", controlnet_input_images=[disc], controlnet_processor_res=64)
    assert canny.status_code == 200 and canny.json()["info"] == "Success"
    edges = np.asarray(decode(canny.json()["images"][0]))
    assert edges.shape == (64, 96, 3) and set(np.unique(edges)) == {0, 255}  # an edge map at the short side's res
    inverted = np.asarray(decode(run(controlnet_module="invert", controlnet_input_images=[disc]).json()["images"][0]))
    assert inverted.shape == (512, 768, 3)  # processor_res -1: the slider's default, 512
    inverted = np.asarray(decode(run(controlnet_module="invert", controlnet_input_images=[disc],
                                     controlnet_processor_res=64).json()["images"][0]))
    assert inverted[32, 45].tolist() == [255, 255, 255] and inverted[2, 2].tolist() == [0, 0, 0]
    assert run(controlnet_module="canny").status_code == 422
    bad = run(controlnet_module="openpose", controlnet_input_images=[disc])
    assert bad.status_code == 422 and bad.json()["detail"].startswith("controlnet_module:")
    big = b64png(Image.new("RGB", (200, 200)))
    over = run(controlnet_module="canny", controlnet_input_images=[big])
    assert over.status_code == 422 and "controlnet_input_images[0]: 200x200" in over.json()["detail"]


def test_the_webuiapi_client_drives_the_controlnet_api(cn_client, disc, controlled):
    import webuiapi

    from tests.server.serving import in_thread

    with in_thread(cn_client.app) as url:
        api = webuiapi.WebUIApi(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]), sampler="Euler", steps=3)
        assert api.controlnet_version() == 2
        assert [m.split(" [")[0] for m in api.controlnet_model_list()] == ["cn-canny", "cn-other"]
        assert "canny" in api.controlnet_module_list()
        image = decode(disc).convert("RGB")
        unit = webuiapi.ControlNetUnit(image=image, module="none", model=api.controlnet_model_list()[0],
                                       resize_mode="Crop and Resize")
        # alwayson_scripts given: webuiapi writes the units into its mutable default dict otherwise, and every
        # later txt2img of the process would send them
        result = api.txt2img(prompt="a harbour", seed=5, width=64, height=64, cfg_scale=7, controlnet_units=[unit],
                             alwayson_scripts={})
        assert np.array_equal(np.asarray(result.images[0], dtype=np.int16), controlled[0])
        detected = api.controlnet_detect([image], module="canny", processor_res=64)
        assert detected.images[0].size == (96, 64)  # its older `controlnet_images` field is taken too
