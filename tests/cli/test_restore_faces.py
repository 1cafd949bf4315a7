"""`--restore-faces gfpgan` end to end: a random-weight GFPGAN file from the models folder through spandrel, the
face found by a test double of the detector (facexlib cannot load here: tests/conftest.py face_detector), and
sdcli's own crop, restore and paste; the infotext and replay; the refusals naming what is missing."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext, png_info
from sdcli.io.replay import plan_replay, read_metadata, request_from_infotext
from tests.conftest import FACE_BOX

FAST = ("--steps", "2", "--width", "64", "--height", "64", "--seed", "5")


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.fixture(scope="module")
def face_models(tmp_path_factory, gfpgan_file):
    """A models folder with GFPGAN/ holding the random GFPGAN file."""
    root = tmp_path_factory.mktemp("face-models")
    (root / "GFPGAN").mkdir()
    (root / "GFPGAN" / "GFPGANv1.4.safetensors").symlink_to(gfpgan_file)
    return root


@pytest.mark.slow
def test_gfpgan_restores_the_face_box_only_and_says_so(cli, tiny_model, face_models, face_detector, tmp_path):
    runs = {}
    for name, extra in (("plain", ()), ("faces", ("--restore-faces", "gfpgan"))):
        result = cli("txt2img", "a portrait", "-m", tiny_model, *FAST, "--models-dir", face_models, *extra,
                     "-o", tmp_path / name, "--json")
        assert result.exit_code == 0, result.stderr
        runs[name] = json.loads(result.stdout)
    plain, restored = px(runs["plain"]["path"]), px(runs["faces"]["path"])
    left, top, right, bottom = FACE_BOX
    changed = (plain != restored).any(-1)
    assert changed[top + 4:bottom - 4, left + 4:right - 4].mean() > 0.9  # the face's middle is the restorer's
    outside = np.ones_like(changed)
    outside[top:bottom + 1, left:right + 1] = False
    assert np.array_equal(plain[outside], restored[outside])  # every other pixel exactly the decoded image's
    params = parse_infotext(runs["faces"]["infotext"])[2]
    assert params["Face restoration"] == "GFPGAN" and "Face restoration" not in runs["plain"]["infotext"]
    assert list(params).index("Face restoration") == list(params).index("Seed") + 1  # the WebUI's place
    assert "CodeFormer weight" not in params
    replay = plan_replay(tmp_path / "faces" / runs["faces"]["path"].rsplit("/", 1)[-1])
    assert replay.request.face_restorer == "gfpgan"  # replay restores the faces again


def test_a_webui_infotext_with_face_restoration_replays_it(tmp_path):
    image = tmp_path / "webui.png"
    Image.new("RGB", (64, 64)).save(image, pnginfo=png_info(
        "a face\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Face restoration: CodeFormer, Size: 64x64, "
        "Model: x, Version: v1.10.1"))
    request, ignored, _ = request_from_infotext(read_metadata(image))
    assert request.face_restorer == "codeformer" and "Face restoration" not in ignored


def test_a_missing_restorer_file_is_exit_2_naming_the_folder(cli, tiny_model, tmp_path):
    (tmp_path / "models" / "GFPGAN").mkdir(parents=True)
    result = cli("txt2img", "a portrait", "-m", tiny_model, *FAST, "--models-dir", tmp_path / "models",
                 "--restore-faces", "gfpgan", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --restore-faces: no GFPGAN model file (a name containing 'GFPGAN') in "
                                     f"{tmp_path / 'models' / 'GFPGAN'}")
    assert not (tmp_path / "out").exists()
    bad = cli("txt2img", "a portrait", "-m", tiny_model, *FAST, "--restore-faces", "gfpgan2")
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        "error: --restore-faces: unknown value 'gfpgan2'; choose from gfpgan, codeformer, none")


@pytest.mark.skipif(importlib.util.find_spec("facexlib") is not None, reason="facexlib is installed")
def test_missing_facexlib_is_exit_2_naming_it(cli, tiny_model, face_models, tmp_path):
    result = cli("txt2img", "a portrait", "-m", tiny_model, *FAST, "--models-dir", face_models,
                 "--restore-faces", "gfpgan", "-o", tmp_path / "out")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: --restore-faces: face detection needs facexlib and OpenCV, and facexlib "
                                    "is not installed; pip install 'sdcli[faces]'")
    assert not (tmp_path / "out").exists()


def test_prompt_file_key_restore_faces_is_read_and_checked(cli, tiny_model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('--prompt "a portrait" --restore_faces true\n')
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "--restore-faces: GFPGAN needs a models folder" in result.stderr  # true: GFPGAN, checked before loading
