"""Model names in WebUI API requests: looked up only in the server's own models (its -m list and its
models folder), as the CLI looks them up there; a path or an unknown name is a 422 before anything loads."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sdcli.io.metadata import read_infotext
from sdcli.models.runtime import RuntimeOptions
from sdcli.server.app import Limits, create_app
from sdcli.server.engine import Engine
from tests.server.conftest import decode

BASE = {"prompt": "a lighthouse", "seed": 7, "steps": 2, "width": 32, "height": 32, "sampler_name": "Euler a"}
HIRES = {"enable_hr": True, "hr_scale": 2, "hr_second_pass_steps": 2, "denoising_strength": 0.5}


def make_client(model, models_dir=None, pipe=None):
    """The app on an engine serving `model`; with `pipe`, every load returns it and is counted."""
    loads = []

    def load(ref, plan):
        loads.append(ref.path)
        return pipe

    engine = Engine.from_specs([str(model)], RuntimeOptions(), models_dir=models_dir and str(models_dir),
                               load=load if pipe is not None else None)
    client = TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    return client, loads


def cli_run(cli, *args):
    result = cli("txt2img", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


REFUSED = [  # (payload, the start of the error detail); {root} is the models folder, {elsewhere} a file outside
    ({**HIRES, "hr_upscaler": "{elsewhere}"}, "hr_upscaler: '{elsewhere}' is a path"),
    ({**HIRES, "hr_upscaler": "{root}/ESRGAN/tiny-4x.safetensors"}, "hr_upscaler: '{root}/ESRGAN/tiny-4x.safetensors' "
                                                                    "is a path"),
    ({**HIRES, "hr_upscaler": "../elsewhere-4x.safetensors"}, "hr_upscaler: '../elsewhere-4x.safetensors' is a path"),
    ({**HIRES, "hr_upscaler": "~/4x.pth"}, "hr_upscaler: '~/4x.pth' is a path"),
    ({**HIRES, "hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler: no upscaler named 'R-ESRGAN 4x+' in {root}/ESRGAN"),
    ({"refiner_checkpoint": "{root}/Stable-diffusion/refiner-sf.safetensors"},
     "refiner_checkpoint: '{root}/Stable-diffusion/refiner-sf.safetensors' is a path but not a model served here"),
    ({"refiner_checkpoint": "sdxl-refiner"}, "refiner_checkpoint: no checkpoint named 'sdxl-refiner'"),
    ({"override_settings": {"sd_vae": "{root}/VAE/tinyvae.safetensors"}},
     "override_settings.sd_vae: '{root}/VAE/tinyvae.safetensors' is a path"),
    ({"override_settings": {"sd_vae": "vae-ft-mse"}}, "override_settings.sd_vae: no vae named 'vae-ft-mse'"),
    ({"prompt": "x <lora:{root}/Lora/detail:1>"}, "prompt: <lora:{root}/Lora/detail>: '{root}/Lora/detail' is a path"),
    ({"prompt": "x <lora:../Lora/detail:1>"}, "prompt: <lora:../Lora/detail>: '../Lora/detail' is a path"),
    ({"prompt": "x <lora:add_detail:1>"}, "prompt: <lora:add_detail>: no lora named 'add_detail'"),
]


@pytest.mark.parametrize("payload, detail", REFUSED, ids=[f"{i}" for i in range(len(REFUSED))])
def test_paths_and_unknown_names_are_422_naming_the_field_before_anything_loads(
        tiny_model, tiny_pipe, server_models, payload, detail):
    client, loads = make_client(tiny_model, server_models["root"], tiny_pipe)
    values = {"root": server_models["root"], "elsewhere": server_models["elsewhere"]}
    body = json.loads(json.dumps({**BASE, **payload}).replace("{root}", str(values["root"]))
                      .replace("{elsewhere}", str(values["elsewhere"])))
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] in ("UsageError", "ModelError") and answer["errors"] == answer["detail"]
    expected = detail.replace("{root}", str(values["root"])).replace("{elsewhere}", str(values["elsewhere"]))
    assert answer["detail"].startswith(expected)
    assert loads == []  # refused before the model (or anything else) loads


@pytest.mark.parametrize("payload, detail", [
    ({**HIRES, "hr_upscaler": "tiny-4x"}, "hr_upscaler: 'tiny-4x' is not a built-in upscaler"),
    ({"refiner_checkpoint": "refiner-sf"}, "refiner_checkpoint: 'refiner-sf' is not served here, and there is no "
                                           "models folder"),
    ({"override_settings": {"sd_vae": "tinyvae"}}, "override_settings.sd_vae: 'tinyvae': no models folder"),
    ({"prompt": "x <lora:detail:1>"}, "prompt: <lora:detail>: no LoRA folder to find it in"),
])
def test_without_a_models_folder_no_name_is_accepted(tiny_model, tiny_pipe, payload, detail):
    client, loads = make_client(tiny_model, None, tiny_pipe)
    response = client.post("/sdapi/v1/txt2img", json={**BASE, **payload})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail), response.text
    assert loads == []
    assert client.post("/sdapi/v1/txt2img", json={**BASE, **HIRES, "hr_upscaler": "Lanczos"}).status_code == 200


def test_esrgan_name_in_the_models_folder_matches_the_cli(cli, tiny_model, tiny_pipe, server_models, tmp_path,
                                                          single_thread):
    client, _ = make_client(tiny_model, server_models["root"], tiny_pipe)
    response = client.post("/sdapi/v1/txt2img", json={**BASE, **HIRES, "hr_upscaler": "tiny-4x"})
    assert response.status_code == 200, response.text
    image = decode(response.json()["images"][0])
    record = cli_run(cli, "a lighthouse", "-m", tiny_model, "--models-dir", server_models["root"], "--seed", "7",
                     "--steps", "2", "-W", "32", "-H", "32", "--sampler", "Euler a", "--hires", "--hires-scale", "2",
                     "--hires-steps", "2", "--hires-denoise", "0.5", "--hires-upscaler", "tiny-4x",
                     "-o", tmp_path)
    assert image.size == (64, 64) and "Hires upscaler: tiny-4x" in record["infotext"]
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(decode_file(record["path"])))
    assert image.info["parameters"] == read_infotext(record["path"])


def test_lora_tag_and_sd_vae_by_name_match_the_cli(cli, tiny_model, server_models, tmp_path, single_thread):
    client, _ = make_client(tiny_model, server_models["root"])  # its own pipeline: the LoRA and VAE change it
    prompt = "a lighthouse <lora:detail:0.8>"
    response = client.post("/sdapi/v1/txt2img", json={**BASE, "prompt": prompt,
                                                      "override_settings": {"sd_vae": "tinyvae"}})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["sd_vae_name"] == "tinyvae.safetensors" and "Lora hashes: \"detail: " in info["infotexts"][0]
    record = cli_run(cli, prompt, "-m", tiny_model, "--models-dir", server_models["root"], "--vae", "tinyvae",
                     "--seed", "7", "--steps", "2", "-W", "32", "-H", "32", "--sampler", "Euler a", "-o", tmp_path)
    image = decode(response.json()["images"][0])
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(decode_file(record["path"])))
    assert image.info["parameters"] == record["infotext"]


def test_refiner_checkpoint_by_name_matches_the_cli(cli, tiny_xl, server_models, tmp_path, single_thread):
    client, _ = make_client(tiny_xl["base"], server_models["root"])
    payload = {**BASE, "width": 64, "height": 64, "steps": 4, "refiner_checkpoint": "refiner-sf",
               "refiner_switch_at": 0.5}
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 200, response.text
    image = decode(response.json()["images"][0])
    record = cli_run(cli, "a lighthouse", "-m", tiny_xl["base"], "--models-dir", server_models["root"],
                     "--refiner", "refiner-sf", "--refiner-switch", "0.5", "--seed", "7", "--steps", "4",
                     "--sampler", "Euler a", "-o", tmp_path)
    assert "Refiner: tiny-xl-refiner [" in record["infotext"] and "Refiner switch at: 0.5" in record["infotext"]
    assert image.info["parameters"] == record["infotext"]
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(decode_file(record["path"])))
    no_refiner = client.post("/sdapi/v1/txt2img", json={**payload, "refiner_checkpoint": "None"})
    assert "Refiner" not in json.loads(no_refiner.json()["info"])["infotexts"][0]


def decode_file(path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def test_options_sd_vae_is_a_checked_name(tiny_model, tiny_pipe, server_models):
    client, loads = make_client(tiny_model, server_models["root"], tiny_pipe)
    vae_file = str(server_models["root"] / "VAE" / "tinyvae.safetensors")
    refused = client.post("/sdapi/v1/options", json={"sd_vae": vae_file})
    assert refused.status_code == 422 and refused.json()["detail"].startswith(f"sd_vae: {vae_file!r} is a path")
    assert client.get("/sdapi/v1/options").json()["sd_vae"] == "Automatic" and loads == []
    assert client.post("/sdapi/v1/options", json={"sd_vae": "tinyvae"}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_vae"] == "tinyvae"
