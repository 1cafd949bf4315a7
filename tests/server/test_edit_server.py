"""Edits by instruction through `sdcli serve`: `sdcli edit --server URL` (sdcli's /sdcli/v1/generate with the
reference images under their names) and the WebUI-dialect route /sdcli/v1/edit give the local edit's pixels and
infotext on the tiny Flux.1 Kontext; a model that cannot edit is refused in one line naming it (422)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext, read_replay_record
from sdcli.job.family_rules import editing_families
from tests.server.serving import in_thread

pytestmark = pytest.mark.usefixtures("single_thread")
PROMPT, SETTINGS = "make the sky purple", ("--steps", "2", "--seed", "3", "--cfg-scale", "2", "-n", "blurry")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("refs") / "photo.png"
    Image.radial_gradient("L").convert("RGB").resize((48, 32)).save(path)
    return path


@pytest.fixture(scope="module")
def engine(tiny_family, tiny_family_pipe, tiny_model, tiny_pipe):
    """A server engine serving the tiny Kontext (current) and the tiny SD1 model, both loaded once."""
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.engine import Engine

    kontext = tiny_family("flux-kontext")
    pipes = {Path(kontext).resolve(): tiny_family_pipe("flux-kontext"), Path(tiny_model).resolve(): tiny_pipe}
    return Engine.from_specs([str(kontext), str(tiny_model)], RuntimeOptions(),
                             load=lambda ref, plan: pipes[Path(ref.path).resolve()])


@pytest.fixture(scope="module")
def local(tiny_family, reference, tmp_path_factory):
    """The local `sdcli edit` (the image every route must give)."""
    from typer.testing import CliRunner

    from sdcli.cli import app

    folder = tmp_path_factory.mktemp("local")
    result = CliRunner().invoke(app, ["edit", "-m", str(tiny_family("flux-kontext")), "-i", str(reference), *SETTINGS,
                                      "-o", str(folder), PROMPT])
    assert result.exit_code == 0, result.output
    (path,) = folder.glob("*.png")
    return path


def _pixels(path_or_image):
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))


@pytest.mark.slow
def test_sdcli_edit_with_server_equals_the_local_edit(engine, local, tiny_family, tiny_model, reference, tmp_path,
                                                      cli):
    from sdcli.server.app import create_app

    with in_thread(create_app(engine)) as url:
        out = tmp_path / "remote"
        result = cli("edit", "-m", tiny_family("flux-kontext"), "-i", reference, *SETTINGS, "-o", out, "--server",
                     url, PROMPT)
        assert result.exit_code == 0, result.stderr
        (path,) = out.glob("*.png")
        assert np.array_equal(_pixels(path), _pixels(local))
        assert read_infotext(path) == read_infotext(local)
        assert 'Reference hashes: "photo.png: ' in read_infotext(path)
        assert read_replay_record(path) == read_replay_record(local)  # the references: this machine's paths
        # A served model that cannot edit: the local run's one line, exit 2, nothing written.
        refused = cli("edit", "-m", tiny_model, "-i", reference, "-o", tmp_path / "sd1", "--server", url, PROMPT)
        assert refused.exit_code == 2
        assert refused.stderr.strip().splitlines()[-1:] == [
            "error: sdcli edit: a Stable Diffusion 1.x model cannot edit by instruction; use one of: "
            + editing_families()]
        assert not list((tmp_path / "sd1").glob("*.png"))


@pytest.fixture
def client(engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import create_app

    engine.current = engine.models[0]
    return TestClient(create_app(engine))


def _b64(path):
    return base64.b64encode(Path(path).read_bytes()).decode()


BODY = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 3, "steps": 2, "cfg_scale": 2}


@pytest.mark.slow
def test_webui_edit_route_equals_the_local_edit(client, local, reference):
    answer = client.post("/sdcli/v1/edit", json={**BODY, "images": [_b64(reference)]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    image = Image.open(__import__("io").BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == (48, 32)  # the reference's fitted size (no width/height given)
    assert np.array_equal(_pixels(image), _pixels(local))
    # The infotext is the local one with the upload's name (image-0.png) for the file's.
    assert json.loads(body["info"])["infotexts"][0] == read_infotext(local).replace("photo.png", "image-0.png")
    assert body["parameters"]["images"] is None  # not echoed back


@pytest.mark.parametrize("body,status,message", [
    ({"images": ["{ref}"], "override_settings": {"sd_model_checkpoint": "tiny-sd1"}}, 422,
     "images: the model 'tiny-sd1 [{hash}]' is a Stable Diffusion 1.x model, which cannot edit by instruction; edit "
     "with a model of: " + editing_families()),
    ({}, 422, "images: give the reference image(s) of the edit, base64"),
    ({"images": ["bm90IGFuIGltYWdl"]}, 422, "images[0] is not a PNG, JPEG or WebP image"),
    ({"images": ["{ref}"], "enable_hr": True}, 422,
     "enable_hr: not with an edit by a Flux.1 Kontext model (an edit is one pass of the editing model, without "
     "hires fix's second pass)"),
    ({"images": ["{ref}"], "mask": "{ref}"}, 422, "mask: an edit takes no mask; the reference images go in images"),
    ({"images": ["{ref}"], "init_images": ["{ref}"]}, 422,
     "init_images: an edit takes no input image to denoise; the reference images go in images"),
    ({"images": ["{ref}"], "script_name": "x/y/z plot"}, 422,
     "script_name: 'x/y/z plot': /sdcli/v1/edit runs no scripts"),
    ({"images": ["{ref}"], "alwayson_scripts": {"controlnet": {"args": []}}}, 422,
     "alwayson_scripts: controlnet: not with an edit (one pass of the editing model)"),
    ({"images": ["{ref}"] * 5}, 422, "images: 5 reference images; a Flux.1 Kontext model takes at most 4"),
    ({"images": ["{ref}"] * 9}, 422, "images: 9 reference images; sdcli edit takes at most 8"),
    ({"images": ["{ref}"], "width": 41}, 422, "width: 41"),
])
def test_webui_edit_route_refusals_name_the_field(client, engine, reference, body, status, message):
    sd1 = engine.models[1]
    image = _b64(reference)
    sent = {k: [image if v == "{ref}" else v for v in vs] if isinstance(vs, list) else image if vs == "{ref}" else vs
            for k, vs in body.items()}
    body = {**BODY, **sent}
    answer = client.post("/sdcli/v1/edit", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"].startswith(message.format(hash=sd1.hash))


@pytest.mark.parametrize("sent,kept", [("photo.png", "photo.png"), ("../../etc/evil.png", "evil.png"),
                                       ("..", "image.png"), ("C:\\pics\\a.png", "a.png"),
                                       ("a\x00b.png", "ab.png"), ("", "image.png")])
def test_a_sent_file_name_stays_a_plain_name_in_the_temp_folder(sent, kept):
    from sdcli.server.payload import safe_name

    assert safe_name(sent) == kept


def test_webui_img2img_with_several_images_points_to_the_edit_route(client, reference):
    answer = client.post("/sdapi/v1/img2img", json={**BODY, "init_images": [_b64(reference)] * 2})
    assert answer.status_code == 422
    assert answer.json()["detail"] == ("init_images: sdcli takes one input image per request, not 2 (an edit's "
                                       "reference images go to POST /sdcli/v1/edit)")
