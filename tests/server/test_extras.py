"""The WebUI API's extras (sdcli upscale's code behind the WebUI's fields) and png-info for PNG, JPEG and WebP."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.reference.webui_api_shapes import EXTRAS_BATCH, EXTRAS_REQUEST_FIELDS, EXTRAS_SINGLE, PNG_INFO, mismatches
from tests.server.conftest import b64png, decode

INFOTEXT = "a red fox\nNegative prompt: fog\nSteps: 2, Sampler: Euler a, Seed: 7, Size: 32x24, Hires resize: 64x48"


def gradient(width=32, height=24):
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    return Image.fromarray(np.concatenate(np.broadcast_arrays(x, y, 255 - x), axis=2).astype(np.uint8))


def png_with_infotext(image, text=INFOTEXT):
    from sdcli.io.metadata import png_info

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(text))
    return base64.b64encode(buffer.getvalue()).decode()


def core(image, upscaler="Lanczos", **options):
    """sdcli upscale's own result for the same image (job.upscale)."""
    from sdcli.job.upscale import UpscaleOptions, upscale_image
    from sdcli.models.upscalers import ready, resolve_upscaler

    ready_upscaler = ready(resolve_upscaler(upscaler, "--upscaler"), "--upscaler")
    return upscale_image(image, ready_upscaler, UpscaleOptions(upscaler, **options))


def test_the_webui_extras_test_request(api):
    """modules' test/test_extras.py test_simple_upscaling_performed, re-typed (its 512 px image: ours is 32x24)."""
    image = gradient()
    payload = {"resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0, "codeformer_visibility": 0,
               "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 128, "upscaling_resize_h": 128,
               "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "None",
               "extras_upscaler_2_visibility": 0, "image": png_with_infotext(image)}
    assert set(payload) - {"image"} == set(EXTRAS_REQUEST_FIELDS) - {"upscale_first"}
    response = api.post("/sdapi/v1/extra-single-image", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert mismatches(body, EXTRAS_SINGLE) == []
    assert body["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"
    out = decode(body["image"])
    want, _ = core(image, scale=2.0)
    assert out.size == (64, 48) and np.array_equal(np.asarray(out.convert("RGB")), np.asarray(want))
    assert out.info["parameters"] == INFOTEXT  # the input's infotext kept
    assert out.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_scale_to_with_and_without_crop(api):
    image = gradient(32, 16)
    base = {"image": b64png(image), "resize_mode": 1, "upscaling_resize_w": 40, "upscaling_resize_h": 40,
            "upscaler_1": "Nearest"}
    cropped = api.post("/sdapi/v1/extra-single-image", json=base).json()
    assert decode(cropped["image"]).size == (40, 40)
    assert "Postprocess crop to: 40x40" in cropped["html_info"]
    want, _ = core(image, "Nearest", width=40, height=40)
    assert np.array_equal(np.asarray(decode(cropped["image"]).convert("RGB")), np.asarray(want))
    whole = api.post("/sdapi/v1/extra-single-image", json={**base, "upscaling_crop": False}).json()
    assert decode(whole["image"]).size == (80, 40)  # by the larger ratio (2.5), not cropped
    assert "crop" not in whole["html_info"] and "Postprocess upscale to: 40x40" in whole["html_info"]


def test_no_upscaler_leaves_the_image_and_a_second_upscaler_blends(api):
    image = gradient()
    same = api.post("/sdapi/v1/extra-single-image", json={"image": b64png(image)}).json()  # upscaler_1 "None"
    assert same["html_info"] == "<p></p>"
    assert np.array_equal(np.asarray(decode(same["image"]).convert("RGB")), np.asarray(image))
    payload = {"image": b64png(image), "upscaler_1": "Lanczos", "upscaler_2": "4x-tiny",
               "extras_upscaler_2_visibility": 0.25}
    body = api.post("/sdapi/v1/extra-single-image", json=payload)
    assert body.status_code == 200, body.text
    assert "Postprocess upscaler 2: 4x-tiny" in body.json()["html_info"]
    lanczos = np.asarray(decode(api.post("/sdapi/v1/extra-single-image", json={**payload, "upscaler_2": "None"})
                                .json()["image"]).convert("RGB")).astype(int)
    esrgan = np.asarray(decode(api.post("/sdapi/v1/extra-single-image", json={**payload, "upscaler_1": "4x-tiny",
                                                                                 "upscaler_2": "None"})
                               .json()["image"]).convert("RGB")).astype(int)
    blended = np.asarray(decode(body.json()["image"]).convert("RGB")).astype(int)
    assert not np.array_equal(lanczos, esrgan)
    assert np.abs(blended - (lanczos * 0.75 + esrgan * 0.25)).max() <= 1


def test_batch_images(api):
    images = [gradient(), gradient(24, 32)]
    payload = {"imageList": [{"data": b64png(im), "name": f"{n}.png"} for n, im in enumerate(images)],
               "upscaler_1": "Lanczos", "upscaling_resize": 2}
    body = api.post("/sdapi/v1/extra-batch-images", json=payload).json()
    assert mismatches(body, EXTRAS_BATCH) == []
    assert [decode(x).size for x in body["images"]] == [(64, 48), (48, 64)]
    assert api.post("/sdapi/v1/extra-batch-images", json={**payload, "show_extras_results": False}
                    ).json()["images"] == []
    bad = {**payload, "imageList": [payload["imageList"][0], {"data": "bm90IGFuIGltYWdl", "name": "x.png"}]}
    refused = api.post("/sdapi/v1/extra-batch-images", json=bad)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("imageList[1]")
    assert "/tmp" not in refused.json()["detail"]


@pytest.mark.parametrize("fields, detail", [
    ({"gfpgan_visibility": 0.5}, "gfpgan_visibility: face restoration is not available"),
    ({"codeformer_visibility": 1}, "codeformer_visibility: face restoration is not available"),
    ({"upscaler_1": "/etc/passwd"}, "upscaler_1: '/etc/passwd' is a path"),
    ({"upscaler_1": "Latent"}, "upscaler_1: Latent works on latents"),
    ({"upscaler_1": "nope"}, "upscaler_1: no upscaler named 'nope'"),
    ({"upscaler_2": "nope", "extras_upscaler_2_visibility": 0.5}, "upscaler_2: no upscaler named 'nope'"),
    ({"upscaling_resize": 4}, "image: the result would be 128x96, over this server's limit of 4096 pixels"),
    ({"upscaling_resize": 9}, "upscaling_resize: 9 is out of range"),
    ({"resize_mode": 2}, "resize_mode: 2 is not 0 (scale by) or 1 (scale to)"),
    ({"image": "bm90IGFuIGltYWdl"}, "image is not a PNG, JPEG or WebP image"),
    ({"image": ""}, "image: give one base64 image"),
])
def test_extras_refusals_name_the_field(api, fields, detail):
    payload = {"image": b64png(gradient()), "upscaler_1": "Lanczos", **fields}
    response = api.post("/sdapi/v1/extra-single-image", json=payload)
    assert response.status_code == 422 and detail in response.json()["detail"], response.text


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_png_info_reads_every_format_info_reads(api, tmp_path, fmt):
    from sdcli.io.metadata import IMAGE_FORMATS, save_image

    path = tmp_path / f"x{IMAGE_FORMATS[fmt][0]}"
    save_image(gradient(), path, fmt, 90, INFOTEXT)
    body = api.post("/sdapi/v1/png-info", json={"image": base64.b64encode(path.read_bytes()).decode()}).json()
    assert mismatches(body, PNG_INFO) == []
    assert body["info"] == INFOTEXT
    params = body["parameters"]
    assert (params["Prompt"], params["Negative prompt"], params["Seed"]) == ("a red fox", "fog", "7")
    assert (params["Size-1"], params["Size-2"], params["Hires resize-1"]) == ("32", "24", "64")
    assert "Size" not in params


def test_png_info_items_and_no_parameters(api):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "elsewhere")
    buffer = io.BytesIO()
    gradient().save(buffer, format="PNG", pnginfo=info)
    body = api.post("/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}).json()
    assert body == {"info": "", "items": {"Software": "elsewhere"}, "parameters": {}}
    bad = api.post("/sdapi/v1/png-info", json={"image": "bm90IGFuIGltYWdl"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("image: not a readable image")
