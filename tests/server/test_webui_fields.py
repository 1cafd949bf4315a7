"""The generation fields the WebUI API accepts: styles, infotext, sampler spellings, edge values, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext
from sdcli.request.styles import PromptStyle
from tests.server.conftest import decode

TXT = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 7, "steps": 2, "width": 32, "height": 32,
       "sampler_name": "Euler a"}
STYLES = (PromptStyle("wrap", "masterpiece, {prompt}, 4k", "blurry, {prompt}"),
          PromptStyle("tail", "oil painting", "lowres"))


@pytest.fixture
def styled_api(api, folder_engine):
    folder_engine.styles = STYLES
    yield api
    folder_engine.styles = ()


def post(client, **payload):
    response = client.post("/sdapi/v1/txt2img", json={**TXT, **payload})
    assert response.status_code == 200, response.text
    body = response.json()
    return body, json.loads(body["info"])


def pixels(body):
    return [np.asarray(decode(x).convert("RGB")) for x in body["images"]]


def test_styles_are_applied_as_the_webui_applies_them(styled_api, single_thread):
    assert styled_api.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "wrap", "prompt": "masterpiece, {prompt}, 4k", "negative_prompt": "blurry, {prompt}"},
        {"name": "tail", "prompt": "oil painting", "negative_prompt": "lowres"}]
    body, info = post(styled_api, styles=["wrap", "tail"])
    prompt, negative, _ = parse_infotext(info["infotexts"][0])
    assert info["styles"] == ["wrap", "tail"] and info["all_prompts"] == [prompt]
    assert prompt == "masterpiece, a lighthouse, 4k, oil painting" and negative == "blurry, fog, lowres"
    by_hand, _ = post(styled_api, prompt=prompt, negative_prompt=negative)
    assert np.array_equal(pixels(body)[0], pixels(by_hand)[0])
    plain, _ = post(styled_api, styles=[])
    assert not np.array_equal(pixels(body)[0], pixels(plain)[0])
    # A style the server does not have is left out, as the WebUI's API leaves it out (clients send their own).
    unknown, info = post(styled_api, styles=["nope", "tail"])
    assert parse_infotext(info["infotexts"][0])[0] == "a lighthouse, oil painting"


def test_infotext_fills_what_the_request_leaves_unset(api):
    text = ("a red fox\nNegative prompt: rain\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, "
            "Seed: 11, Size: 32x24, Clip skip: 2, ENSD: 31337, Tiling: True")
    payload = {"infotext": text, "steps": 2, "sampler_name": "Euler a"}  # set here: these win
    response = api.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    prompt, negative, params = parse_infotext(info["infotexts"][0])
    assert (prompt, negative) == ("a red fox", "rain")
    assert (params["Steps"], params["Sampler"], params["Seed"], params["Size"]) == ("2", "Euler a", "11", "32x24")
    assert (params["CFG scale"], params["Clip skip"], params["ENSD"], params["Tiling"]) == ("5", "2", "31337", "True")
    assert api.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1  # a setting for this request only
    bad = api.post("/sdapi/v1/txt2img", json={"infotext": "x\nSteps: many, Seed: 1, Size: 32x32"})
    assert bad.status_code == 422 and bad.json()["detail"] == "infotext: bad 'Steps' value 'many'"


def test_infotext_with_hires_keys_enables_the_hires_pass(api):
    text = ("a red fox\nSteps: 2, Seed: 3, Size: 32x24, Denoising strength: 0.5, Hires upscale: 2, "
            "Hires upscaler: Lanczos")
    response = api.post("/sdapi/v1/txt2img", json={"infotext": text})
    assert response.status_code == 200, response.text
    body, info = response.json(), json.loads(response.json()["info"])
    assert decode(body["images"][0]).size == (64, 48)
    _, _, params = parse_infotext(info["infotexts"][0])
    assert params["Hires upscaler"] == "Lanczos" and params["Denoising strength"] == "0.5"


@pytest.mark.parametrize("joined, split", [
    ({"sampler_name": "DPM++ 2M Karras"}, {"sampler_name": "DPM++ 2M", "scheduler": "KARRAS"}),
    ({"sampler_index": "Euler a"}, {"sampler_name": "Euler a", "sampler_index": "DDIM"}),
    ({"sampler_name": "DPM++ 2M", "scheduler": "sgm_uniform"},
     {"sampler_name": "DPM++ 2M", "scheduler": "SGM Uniform"}),
])
def test_sampler_and_scheduler_spellings(api, single_thread, joined, split):
    a, info_a = post(api, **{"sampler_name": None, **joined})
    b, info_b = post(api, **split)
    assert info_a["infotexts"] == info_b["infotexts"]
    assert np.array_equal(pixels(a)[0], pixels(b)[0])


def test_hires_with_denoising_zero_is_an_upscale_only_pass(api, single_thread):
    """The WebUI's own hires test sends denoising_strength 0: its img2img of strength 0 runs no step."""
    zero, info = post(api, enable_hr=True, denoising_strength=0, hr_upscaler="Lanczos", hr_scale=2)
    _, _, params = parse_infotext(info["infotexts"][0])
    assert params["Denoising strength"] == "0" and decode(zero["images"][0]).size == (64, 64)
    # upscaled through the VAE, not denoised: no second-pass setting moves its pixels, unlike a real second pass
    other = {"hr_second_pass_steps": 4, "hr_sampler_name": "Euler"}
    again, _ = post(api, enable_hr=True, denoising_strength=0, hr_upscaler="Lanczos", hr_scale=2, **other)
    assert np.array_equal(pixels(zero)[0], pixels(again)[0])
    some, _ = post(api, enable_hr=True, denoising_strength=0.6, hr_upscaler="Lanczos", hr_scale=2)
    more, _ = post(api, enable_hr=True, denoising_strength=0.6, hr_upscaler="Lanczos", hr_scale=2, **other)
    assert not np.array_equal(pixels(some)[0], pixels(more)[0])


def test_edge_values_taken_the_webui_way(api):
    body, info = post(api, seed=-1, subseed=-1, seed_resize_from_w=-1, seed_resize_from_h=0, firstphase_width=0,
                      firstphase_height=0, force_task_id="task(abc)", eta=0, s_churn=0, s_noise=1, s_tmax=0, s_tmin=0)
    assert 0 <= info["seed"] < 2**32
    assert "Eta: 0" in info["infotexts"][0]  # eta 0 on Euler a: the request's eta, as the WebUI's p.eta
    assert body["parameters"]["force_task_id"] == "task(abc)"


def test_send_images_false(api):
    body, info = post(api, send_images=False)
    assert body["images"] == [] and len(info["infotexts"]) == 1


@pytest.mark.parametrize("fields, detail", [
    ({"restore_faces": True}, "restore_faces: no GFPGAN model file (a name containing 'GFPGAN') in "),
    ({"restore_faces": True, "override_settings": {"face_restoration_model": "GPFGAN"}},
     "override_settings.face_restoration_model: 'GPFGAN' is not a face restorer; use GFPGAN or CodeFormer"),
    ({"seed_resize_from_w": 64, "seed_resize_from_h": 64}, "seed_resize_from_w: seed resize is not supported"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 0}}, "override_settings.CLIP_stop_at_last_layers: 0 is out"),
    ({"enable_hr": True, "denoising_strength": 1.5}, "denoising_strength: 1.5 is out of range"),
])
def test_refusals_name_the_field(api, fields, detail):
    response = api.post("/sdapi/v1/txt2img", json={**TXT, **fields})
    assert response.status_code == 422 and detail in response.json()["detail"], response.text


def test_save_images_writes_the_cli_files_into_the_server_output(api, folder_engine, tmp_path):
    from sdcli.io.metadata import read_infotext, read_replay_record

    folder_engine.output = tmp_path / "out"
    try:
        body, info = post(api, batch_size=2, save_images=True)
        files = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert files == ["00000-7.png", "00001-8.png"]
        assert read_infotext(tmp_path / "out" / "00001-8.png") == info["infotexts"][1]
        assert read_replay_record(tmp_path / "out" / "00000-7.png")["request"]["seed"] == 7
        assert np.array_equal(np.asarray(decode(body["images"][0]).convert("RGB")),
                              np.asarray(Image.open(tmp_path / "out" / "00000-7.png")))
        post(api, save_images=True, override_settings={"samples_format": "jpg"})
        assert (tmp_path / "out" / "00002-7.jpg").is_file()
        post(api)  # save_images false: nothing written
        assert len(list((tmp_path / "out").iterdir())) == 3
        bad = api.post("/sdapi/v1/options", json={"samples_format": "gif"})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("samples_format: 'gif'")
    finally:
        folder_engine.output = Path("outputs")


def test_restore_faces_names_what_is_missing(api, folder_engine, webui_models, engine):
    import importlib.util

    from fastapi.testclient import TestClient
    from safetensors.numpy import save_file

    from sdcli.server.app import create_app

    response = api.post("/sdapi/v1/txt2img", json={**TXT, "restore_faces": True})
    assert response.status_code == 422
    assert response.json()["detail"] == (f"restore_faces: no GFPGAN model file (a name containing 'GFPGAN') in "
                                         f"{webui_models / 'GFPGAN'}")
    bare = TestClient(create_app(engine)).post("/sdapi/v1/txt2img", json={**TXT, "restore_faces": True})
    assert bare.status_code == 422 and bare.json()["detail"].startswith(
        "restore_faces: GFPGAN needs a models folder (--models-dir, --webui-dir or --comfy-dir)")
    (webui_models / "GFPGAN").mkdir()
    try:
        (webui_models / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"x")
        found = api.post("/sdapi/v1/img2img", json={**TXT, "restore_faces": True, "init_images": [_png()]})
        assert found.status_code == 422 and found.json()["detail"].startswith("restore_faces: ")
        assert "GFPGANv1.4.pth" in found.json()["detail"]  # a pickle: refused unless the server allows them
        (webui_models / "GFPGAN" / "GFPGANv1.4.pth").unlink()
        save_file({"toRGB.0.weight": np.zeros(1, np.float32)}, str(webui_models / "GFPGAN" / "GFPGANv1.4.safetensors"))
        detector = api.post("/sdapi/v1/txt2img", json={**TXT, "restore_faces": True})
        if importlib.util.find_spec("facexlib") is None:  # this machine: no facexlib (torchvision cannot load)
            assert detector.status_code == 422 and detector.json()["detail"].startswith(
                "restore_faces: face detection needs facexlib and OpenCV, and facexlib is not installed")
    finally:
        for file in (webui_models / "GFPGAN").iterdir():
            file.unlink()
        (webui_models / "GFPGAN").rmdir()


@pytest.mark.slow
def test_restore_faces_runs_the_restorer_and_writes_its_infotext(api, webui_models, gfpgan_file, face_detector):
    face_detector.faces = 0  # an image without faces: the restorer loads, nothing to paste (GFPGAN's pass is slow)
    (webui_models / "GFPGAN").mkdir()
    try:
        (webui_models / "GFPGAN" / "GFPGANv1.4.safetensors").symlink_to(gfpgan_file)
        plain = api.post("/sdapi/v1/txt2img", json=TXT).json()
        body = api.post("/sdapi/v1/txt2img", json={**TXT, "restore_faces": True}).json()
        info = json.loads(body["info"])
        assert "Face restoration: GFPGAN" in info["infotexts"][0]
        assert api.get("/sdapi/v1/face-restorers").json() == [{"name": "GFPGAN",
                                                               "cmd_dir": str(webui_models / "GFPGAN")}]
        assert "Face restoration" not in json.loads(plain["info"])["infotexts"][0]
        assert np.array_equal(np.asarray(decode(body["images"][0])), np.asarray(decode(plain["images"][0])))
        by_option = api.post("/sdapi/v1/txt2img", json={**TXT, "override_settings": {"face_restoration": True}})
        assert "Face restoration: GFPGAN" in json.loads(by_option.json()["info"])["infotexts"][0]  # the WebUI's
        assert "Face restoration" not in json.loads(api.post("/sdapi/v1/txt2img", json={  # restore_faces wins
            **TXT, "restore_faces": False, "override_settings": {"face_restoration": True}}).json()["info"])[
            "infotexts"][0]
        codeformer = api.post("/sdapi/v1/txt2img", json={
            **TXT, "restore_faces": True, "override_settings": {"face_restoration_model": "CodeFormer"}})
        assert codeformer.status_code == 422 and codeformer.json()["detail"].startswith(
            "restore_faces: no CodeFormer model file")
    finally:
        (webui_models / "GFPGAN" / "GFPGANv1.4.safetensors").unlink()
        (webui_models / "GFPGAN").rmdir()


def _png():
    from tests.server.conftest import b64png

    return b64png(Image.new("RGB", (32, 32)))
