"""One job through every entry point: the same files (pixels, infotext, replay record) wherever it runs.

The one-shot command, a prompt file, an X/Y/Z cell, a folder of inputs, the `--server` client
and the WebUI API all drive the same job pipeline (plan -> load -> generate -> write); a setting one of them
dropped or spelt differently shows here as different pixels or a different record.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext, read_replay_record

PROMPT, NEGATIVE, SEED = "a red cube", "blurry", 5
SETTINGS = ["--steps", "2", "-W", "32", "-H", "32", "--sampler", "Euler a", "--cfg-scale", "6"]


def _written(result, folder: Path) -> Path:
    assert result.exit_code == 0, result.stderr
    cells = sorted(p for p in folder.rglob("*.png") if "grid" not in p.name)
    assert len(cells) == 1, cells
    return cells[0]


@pytest.fixture(scope="module")
def one_shot(tiny_model, tmp_path_factory):
    from typer.testing import CliRunner

    from sdcli.cli import app

    folder = tmp_path_factory.mktemp("one-shot")
    result = CliRunner().invoke(app, ["txt2img", PROMPT, "-n", NEGATIVE, "-m", str(tiny_model), "--seed", str(SEED),
                                      *SETTINGS, "-o", str(folder)])
    return _written(result, folder)


def _same_image(a: Path, b: Path) -> None:
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert read_infotext(a) == read_infotext(b)


def test_prompt_file(one_shot, tiny_model, tmp_path, cli):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f'--prompt "{PROMPT}" --negative_prompt "{NEGATIVE}"\n', encoding="utf-8")
    path = _written(cli("batch", prompts, "-m", tiny_model, "--seed", SEED, *SETTINGS, "-o", tmp_path / "out"),
                    tmp_path / "out")
    _same_image(one_shot, path)
    assert read_replay_record(path) == read_replay_record(one_shot)


def test_xyz_cell(one_shot, tiny_model, tmp_path, cli):
    path = _written(cli("xyz", PROMPT, "-n", NEGATIVE, "-m", tiny_model, "--x", f"Seed: {SEED}", *SETTINGS,
                        "-o", tmp_path / "out"), tmp_path / "out")
    _same_image(one_shot, path)
    assert read_replay_record(path) == read_replay_record(one_shot)


def test_server_client(one_shot, tiny_model, tmp_path, cli, server):
    path = _written(cli("txt2img", PROMPT, "-n", NEGATIVE, "-m", tiny_model, "--seed", SEED, *SETTINGS,
                        "-o", tmp_path / "out", "--server", server["auth_url"]), tmp_path / "out")
    _same_image(one_shot, path)
    assert read_replay_record(path) == read_replay_record(one_shot)


def test_webui_api(one_shot, server):
    body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 2, "width": 32, "height": 32,
            "sampler_name": "Euler a", "cfg_scale": 6}
    request = urllib.request.Request(server["url"] + "/sdapi/v1/txt2img", json.dumps(body).encode(),
                                     {"Content-Type": "application/json",
                                      "Authorization": "Basic " + base64.b64encode(b"me:secret").decode()})
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.load(response)
    image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(Image.open(one_shot)))
    assert json.loads(answer["info"])["infotexts"][0] == read_infotext(one_shot)


def test_refiner_job_in_a_prompt_file_is_the_one_shot_job(tiny_xl, tmp_path, cli, monkeypatch):
    """The add-ons a job resolves (here an SDXL refiner given as a relative path) are recorded alike."""
    monkeypatch.chdir(tiny_xl["refiner"].parent)
    flags = ["-m", tiny_xl["base"], "--refiner", tiny_xl["refiner"].name, "--refiner-switch", "0.5", "--seed", SEED,
             "--steps", "2", "-W", "64", "-H", "64", "--sampler", "Euler a"]
    one = _written(cli("txt2img", PROMPT, *flags, "-o", tmp_path / "one"), tmp_path / "one")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f'--prompt "{PROMPT}"\n', encoding="utf-8")
    path = _written(cli("batch", prompts, *flags, "-o", tmp_path / "batch"), tmp_path / "batch")
    _same_image(one, path)
    assert "Refiner: tiny-xl-refiner" in read_infotext(one)
    assert read_replay_record(path) == read_replay_record(one)


def test_folder_of_inputs_is_the_one_shot_img2img(one_shot, tiny_model, tmp_path, cli):
    """img2img over a folder (the batch runner) and img2img of the one file: the same image and record."""
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "photo.png"
    Image.open(one_shot).save(photo)
    flags = ["-m", tiny_model, "--seed", SEED, *SETTINGS, "--strength", "0.6"]
    single = _written(cli("img2img", PROMPT, "-i", photo, *flags, "-o", tmp_path / "one"), tmp_path / "one")
    folder = _written(cli("img2img", PROMPT, "-i", tmp_path / "in", *flags, "-o", tmp_path / "many"),
                      tmp_path / "many")
    _same_image(single, folder)
    assert read_replay_record(folder) == read_replay_record(single)
