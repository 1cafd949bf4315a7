"""sd_model_checkpoint over the WebUI API with a models folder: its checkpoints listed by their WebUI titles, a
POST /options switches the following requests to one, override_settings for one request only,
/refresh-checkpoints picks up new files, and nothing is ever opened by path."""

import functools
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from tests.server.conftest import decode

TXT = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 11, "steps": 2, "width": 32, "height": 32,
       "sampler_name": "Euler a", "cfg_scale": 6}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A models folder with two tiny SD1 single files of different weights: a.safetensors, sub/b.safetensors."""
    from sdcli.models.tiny import build_tiny_single_file

    root = tmp_path_factory.mktemp("switch") / "models"
    build_tiny_single_file(root / "Stable-diffusion" / "a.safetensors", seed=1)
    build_tiny_single_file(root / "Stable-diffusion" / "sub" / "b.safetensors", seed=2)
    return root


@pytest.fixture(scope="module")
def engine(tiny_model, tiny_pipe, folder):
    from sdcli.models import loader
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.engine import Engine

    loads, loaded = [], {tiny_model.resolve(): tiny_pipe}

    def load(ref, plan):  # each file read once: a switch back finds it as a fast disk would
        loads.append(ref.path.name)
        if ref.path not in loaded:
            loaded[ref.path] = loader.load_model(ref, plan)
        return loaded[ref.path]

    engine = Engine.from_specs([str(tiny_model)], RuntimeOptions(), models_dir=str(folder), load=load)
    engine.loads = loads
    return engine


@pytest.fixture
def api(engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import Limits, create_app

    engine.current = engine.models[0]
    return TestClient(create_app(engine, limits=Limits(max_pixels=64 * 64, max_images=4)))


@functools.cache
def direct(path):
    """The TXT image of the checkpoint file at `path`, run by sdcli's core without the server."""
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import single_file_ref
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    model = load_model(single_file_ref(path), plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False))
    request = GenerationRequest(prompt="a lighthouse", negative_prompt="fog", seed=11, steps=2, width=32, height=32,
                                sampler="Euler a", cfg_scale=6)
    return np.asarray(next(iter(run(request, model, validate(request), model_name="m", model_hash="0" * 10))).image)


def image(response):
    assert response.status_code == 200, response.text
    return np.asarray(decode(response.json()["images"][0]).convert("RGB"))


def titles(api):
    return [m["title"] for m in api.get("/sdapi/v1/sd-models").json()]


@pytest.mark.slow  # model loads
def test_switch_to_a_folder_checkpoint_by_its_webui_title(api, engine, folder, single_thread):
    models = api.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["tiny-sd1", "a", "sub_b"]
    assert models[2]["filename"] == str(folder / "Stable-diffusion" / "sub" / "b.safetensors")
    listed = models[2]["title"]
    assert listed in ("sub/b.safetensors", f"sub/b.safetensors [{models[2]['hash']}]")  # a hash once known
    served = image(api.post("/sdapi/v1/txt2img", json=TXT))

    assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": listed}).status_code == 200
    options = api.get("/sdapi/v1/options").json()
    b_hash = options["sd_checkpoint_hash"]
    assert options["sd_model_checkpoint"] == f"sub/b.safetensors [{b_hash}]" and len(b_hash) == 10
    assert titles(api)[2] == options["sd_model_checkpoint"]  # hashed on load: listed with its hash since
    response = api.post("/sdapi/v1/txt2img", json=TXT)
    b = image(response)
    info = json.loads(response.json()["info"])
    assert info["sd_model_name"] == "b" and info["sd_model_hash"] == b_hash
    assert np.array_equal(b, direct(folder / "Stable-diffusion" / "sub" / "b.safetensors"))
    assert not np.array_equal(b, served)
    assert np.array_equal(image(api.post("/sdapi/v1/txt2img", json=TXT)), b)  # it stays for the next requests

    # The bare file name and a title with its hash both name it; a name without one too.
    for name in ("a.safetensors", "a", "tiny-sd1"):
        assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": name}).status_code == 200
        assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"].split(" [")[0] in (
            "a.safetensors", "tiny-sd1")
    assert np.array_equal(image(api.post("/sdapi/v1/txt2img", json=TXT)), served)


@pytest.mark.slow  # model loads
def test_override_settings_model_is_for_that_request_only(api, engine, folder, single_thread):
    a = direct(folder / "Stable-diffusion" / "a.safetensors")
    once = {**TXT, "override_settings": {"sd_model_checkpoint": "a.safetensors"}}
    assert np.array_equal(image(api.post("/sdapi/v1/txt2img", json=once)), a)
    assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sd1 [")
    after = image(api.post("/sdapi/v1/txt2img", json=TXT))
    assert not np.array_equal(after, a)  # back on the served model
    kept = {**once, "override_settings_restore_afterwards": False}
    assert np.array_equal(image(api.post("/sdapi/v1/txt2img", json=kept)), a)
    assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("a.safetensors [")


@pytest.mark.slow  # model loads
@pytest.mark.parametrize("fails", [False, True], ids=["grid", "failed-cell"])
def test_xyz_checkpoint_axis_restores_the_current_model_after_the_grid(api, engine, folder, monkeypatch, fails,
                                                                       single_thread):
    """The WebUI's X/Y/Z plot puts back the checkpoint it started with after the grid (scripts/xyz_grid.py's
    settings stack), also when a cell fails."""
    from sdcli.errors import RuntimeFailure
    from sdcli.server.scripts import xyz_labels

    served = image(api.post("/sdapi/v1/txt2img", json=TXT))
    if fails:  # the second cell fails as it runs, after the first switched the model
        generate, calls = engine.generate, []

        def failing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeFailure("the cell failed")
            return generate(*args, **kwargs)

        monkeypatch.setattr(engine, "generate", failing)
    axis = xyz_labels("txt2img").index("Checkpoint name")
    args = [axis, "sub/b.safetensors, a.safetensors", [], 0, "", [], 0, "", [], True, True, False, False, False,
            False, False, 0, False]
    response = api.post("/sdapi/v1/txt2img", json={**TXT, "script_name": "x/y/z plot", "script_args": args})
    if fails:
        assert response.status_code == 422 and "the cell failed" in response.text
        monkeypatch.setattr(engine, "generate", generate)
    else:
        assert response.status_code == 200, response.text
        cells = [np.asarray(decode(data).convert("RGB")) for data in response.json()["images"][1:]]
        assert np.array_equal(cells[0], direct(folder / "Stable-diffusion" / "sub" / "b.safetensors"))
        assert np.array_equal(cells[1], direct(folder / "Stable-diffusion" / "a.safetensors"))
    assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-sd1 [")
    assert np.array_equal(image(api.post("/sdapi/v1/txt2img", json=TXT)), served)


@pytest.mark.slow
def test_refresh_checkpoints_picks_up_new_files(api, engine, folder):
    new = folder / "Stable-diffusion" / "c.safetensors"
    try:
        shutil.copyfile(folder / "Stable-diffusion" / "a.safetensors", new)
        assert not any(t.startswith("c.safetensors") for t in titles(api))  # read again on refresh only
        missing = api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "c.safetensors"})
        assert missing.status_code == 422
        assert api.post("/sdapi/v1/refresh-checkpoints").status_code == 200
        assert any(t.startswith("c.safetensors") for t in titles(api))
        assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "c"}).status_code == 200
    finally:
        new.unlink()
        api.post("/sdapi/v1/refresh-checkpoints")
        engine.current = engine.models[0]


@pytest.mark.parametrize("value", ["nope", "{folder}/Stable-diffusion/a.safetensors", "../a.safetensors",
                                   "~/a.safetensors", "Stable-diffusion/a.safetensors"])
def test_unknown_names_and_paths_are_422_naming_the_key(api, engine, folder, value):
    value = value.format(folder=folder)
    loads = len(engine.loads)
    response = api.post("/sdapi/v1/options", json={"sd_model_checkpoint": value})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"sd_model_checkpoint: model {value!r} is not served here")
    assert "nor is it a checkpoint in" in response.json()["detail"]
    once = api.post("/sdapi/v1/txt2img", json={**TXT, "override_settings": {"sd_model_checkpoint": value}})
    assert once.status_code == 422 and f"sd_model_checkpoint: model {value!r}" in once.json()["detail"]
    assert len(engine.loads) == loads  # nothing loaded


@pytest.mark.slow  # writes and loads a tiny Flux transformer file with its parts
def test_a_transformer_file_in_the_folder_takes_its_parts_from_it(tiny_model, tmp_path, cli, single_thread):
    """Forge keeps Flux transformer files in Stable-diffusion/ and their encoders and VAE beside: switching to one
    over the API runs it with those parts, as the CLI does with the same models folder."""
    from fastapi.testclient import TestClient

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.models.tiny_flux import write_tiny_flux_files
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    root = tmp_path / "models"
    files = write_tiny_flux_files(tmp_path / "made" / "flux1-dev.safetensors", "flux-dev", 0, "bfl", "F16")
    for sub, name in (("Stable-diffusion", "flux1-dev"), ("text_encoder", "clip_l"), ("text_encoder", "t5xxl"),
                      ("VAE", "ae")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(files["transformer"].parent / f"{name}.safetensors", root / sub)
    engine = Engine.from_specs([str(tiny_model)], RuntimeOptions(), models_dir=str(root))  # sdcli's own loader
    api = TestClient(create_app(engine, limits=Limits(max_pixels=64 * 64, max_images=4)))
    assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "flux1-dev.safetensors"}).status_code == 200
    body = {"prompt": "a cat", "steps": 2, "width": 32, "height": 32, "seed": 3, "sampler_name": "Euler",
            "scheduler": "simple"}
    response = api.post("/sdapi/v1/txt2img", json=body)
    served = decode(response.json()["images"][0])
    local = cli("txt2img", "--models-dir", root, "-m", "flux1-dev", "--steps", "2", "-W", "32", "-H", "32",
                "--seed", "3", "--sampler", "Euler", "--schedule", "simple", "-o", tmp_path / "local", "a cat")
    assert local.exit_code == 0, local.stderr
    (png,) = (tmp_path / "local").glob("*.png")
    assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(Image.open(png).convert("RGB")))
    assert "Module 1: ae" in served.info["parameters"]
