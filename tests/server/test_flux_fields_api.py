"""Forge's API fields for Flux: distilled_cfg_scale and shift reach the request; unset settings stay unset until
the plan step (the model family's, else the WebUI API's Euler); SD models ignore distilled_cfg_scale, as Forge."""

import json

from sdcli.io.metadata import parse_infotext
from sdcli.server.schemas import Txt2ImgRequest, txt2img_request
from tests.server.conftest import decode

TXT = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32}


def test_distilled_cfg_scale_and_shift_arrive_in_the_request():
    request = txt2img_request(Txt2ImgRequest(**TXT, distilled_cfg_scale=2.5, shift=3.0), {})
    assert (request.distilled_cfg_scale, request.shift) == (2.5, 3.0)
    unset = txt2img_request(Txt2ImgRequest(**TXT), {})
    assert (unset.cfg_scale, unset.sampler, unset.schedule, unset.distilled_cfg_scale) == (None, None, None, None)
    named = txt2img_request(Txt2ImgRequest(**TXT, sampler_index="DDIM", scheduler="Karras", cfg_scale=4), {})
    assert (named.sampler, named.schedule, named.cfg_scale) == ("DDIM", "karras", 4)
    hires = txt2img_request(Txt2ImgRequest(**TXT, enable_hr=True, hr_cfg=5, hr_distilled_cfg=6), {}).hires
    assert (hires.cfg_scale, hires.distilled_cfg_scale) == (5, 6)
    same = txt2img_request(Txt2ImgRequest(**TXT, enable_hr=True), {}).hires
    assert (same.cfg_scale, same.distilled_cfg_scale) == (None, None)  # the first pass's


def test_an_sd_model_runs_a_payload_with_distilled_cfg_scale_as_forge_does(client, single_thread):
    response = client.post("/sdapi/v1/txt2img", json={**TXT, "distilled_cfg_scale": 3.5})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["sampler_name"] == "Euler" and info["cfg_scale"] == 7.0  # the WebUI API's defaults on SD
    _, _, params = parse_infotext(decode(response.json()["images"][0]).info["parameters"])
    assert params["Sampler"] == "Euler" and params["CFG scale"] == "7" and "Distilled CFG Scale" not in params


def test_an_sd_model_ignores_hr_distilled_cfg_as_forge_does(client, single_thread):
    payload = {**TXT, "enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 1, "hr_distilled_cfg": 6}
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 200, response.text
    _, _, params = parse_infotext(decode(response.json()["images"][0]).info["parameters"])
    assert params["Hires upscale"] == "1.5" and "Hires Distilled CFG Scale" not in params
