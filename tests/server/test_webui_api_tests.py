"""The AUTOMATIC1111 WebUI's own API tests (its test/ folder: test_txt2img.py, test_img2img.py, test_utils.py,
test_extras.py), re-typed against `sdcli serve`'s app on the tiny model, for the points sdcli covers.

Where sdcli answers differently it is said at the test: restore_faces is a 422 naming what is missing where the
server has no face-restoration model (the WebUI ships CodeFormer); the inpainting tests run on the tiny inpainting
model (the WebUI runs them on its one model).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import b64png, decode


@pytest.fixture
def webui(folder_engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import Limits, create_app

    folder_engine.current = folder_engine.models[0]
    folder_engine.options.clear()
    return TestClient(create_app(folder_engine, limits=Limits(max_pixels=128 * 128, max_images=4)))


@pytest.fixture
def simple_txt2img_request():
    return {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0,
            "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1, "negative_prompt": "",
            "prompt": "example prompt", "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
            "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
            "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}


@pytest.fixture
def basic_image():
    x = np.linspace(0, 255, 64, dtype=np.uint8)
    return b64png(Image.fromarray(np.stack(np.broadcast_arrays(x[None, :], x[:, None], 255 - x[None, :]), axis=2)))


@pytest.fixture
def simple_img2img_request(basic_image):
    return {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
            "include_init_images": False, "init_images": [basic_image], "inpaint_full_res": False,
            "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False, "mask": None,
            "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {}, "prompt": "example prompt",
            "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
            "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
            "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}


def ok(response, images=1):
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == images
    return response.json()


# test_txt2img.py

def test_txt2img_simple_performed(webui, simple_txt2img_request):
    body = ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))
    assert decode(body["images"][0]).size == (64, 64)


def test_txt2img_with_negative_prompt_performed(webui, simple_txt2img_request):
    simple_txt2img_request["negative_prompt"] = "example negative prompt"
    ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))


def test_txt2img_with_complex_prompt_performed(webui, simple_txt2img_request):
    simple_txt2img_request["prompt"] = "((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3], [alt|alt1]"
    ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))


def test_txt2img_not_square_image_performed(webui, simple_txt2img_request):
    simple_txt2img_request["height"] = 128
    assert decode(ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))["images"][0]).size == (64, 128)


def test_txt2img_with_hrfix_performed(webui, simple_txt2img_request):
    simple_txt2img_request["enable_hr"] = True  # with denoising_strength 0: the WebUI's upscale-only pass
    assert decode(ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))["images"][0]).size == (128, 128)


def test_txt2img_with_tiling_performed(webui, simple_txt2img_request):
    simple_txt2img_request["tiling"] = True
    body = ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))
    assert "Tiling: True" in json.loads(body["info"])["infotexts"][0]


def test_txt2img_with_restore_faces_is_refused_naming_what_is_missing(webui, simple_txt2img_request):
    simple_txt2img_request["restore_faces"] = True  # the WebUI: 200 (it has CodeFormer); sdcli has no face model
    response = webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request)
    assert response.status_code == 422 and response.json()["detail"].startswith("restore_faces: ")


@pytest.mark.parametrize("sampler", ["PLMS", "DDIM", "UniPC"])
def test_txt2img_with_vanilla_sampler_performed(webui, simple_txt2img_request, sampler):
    simple_txt2img_request["sampler_index"] = sampler
    body = ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request))
    assert json.loads(body["info"])["sampler_name"] == sampler


def test_txt2img_multiple_batches_performed(webui, simple_txt2img_request):
    simple_txt2img_request["n_iter"] = 2
    ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request), images=2)


def test_txt2img_batch_performed(webui, simple_txt2img_request):
    simple_txt2img_request["batch_size"] = 2
    ok(webui.post("/sdapi/v1/txt2img", json=simple_txt2img_request), images=2)


# test_img2img.py

def test_img2img_simple_performed(webui, simple_img2img_request):
    ok(webui.post("/sdapi/v1/img2img", json=simple_img2img_request))


@pytest.mark.parametrize("invert", [False, True])
def test_inpainting_masked_performed(webui, folder_engine, simple_img2img_request, invert):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    simple_img2img_request.update(mask=b64png(mask), inpainting_mask_invert=invert,
                                  override_settings={"sd_model_checkpoint": folder_engine.models[1].title})
    ok(webui.post("/sdapi/v1/img2img", json=simple_img2img_request))


def test_img2img_sd_upscale_performed(webui, simple_img2img_request):
    simple_img2img_request["script_name"] = "sd upscale"
    simple_img2img_request["script_args"] = ["", 8, "Lanczos", 2.0]
    assert decode(ok(webui.post("/sdapi/v1/img2img", json=simple_img2img_request))["images"][0]).size == (128, 128)


# test_utils.py

def test_options_write(webui):
    url = "/sdapi/v1/options"
    pre_value = webui.get(url).json()["send_seed"]
    assert webui.post(url, json={"send_seed": not pre_value}).status_code == 200
    assert webui.get(url).json()["send_seed"] == (not pre_value)
    webui.post(url, json={"send_seed": pre_value})


@pytest.mark.parametrize("url", ["sdapi/v1/cmd-flags", "sdapi/v1/samplers", "sdapi/v1/upscalers", "sdapi/v1/sd-models",
                                 "sdapi/v1/hypernetworks", "sdapi/v1/face-restorers", "sdapi/v1/realesrgan-models",
                                 "sdapi/v1/prompt-styles", "sdapi/v1/embeddings"])
def test_get_api_url(webui, url):
    assert webui.get(f"/{url}").status_code == 200


# test_extras.py

def test_simple_upscaling_performed(webui, basic_image):
    payload = {"resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0, "codeformer_visibility": 0,
               "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 128, "upscaling_resize_h": 128,
               "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "None",
               "extras_upscaler_2_visibility": 0, "image": basic_image}
    response = webui.post("/sdapi/v1/extra-single-image", json=payload)
    assert response.status_code == 200 and decode(response.json()["image"]).size == (128, 128)


def test_png_info_performed(webui, basic_image):
    # The WebUI's test posts to extra-single-image (a slip in its file); png-info is the endpoint it names.
    assert webui.post("/sdapi/v1/png-info", json={"image": basic_image}).status_code == 200
    assert webui.post("/sdapi/v1/extra-single-image", json={"image": basic_image}).status_code == 200
