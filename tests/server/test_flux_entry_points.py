"""One Flux job through every entry point: the one-shot command, a prompt file, an X/Y/Z cell, the WebUI API
(`distilled_cfg_scale`, `shift`) and the `--server` client give the same pixels, infotext and record."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext, read_replay_record
from tests.server.serving import free_port, wait_for

PROMPT, NEGATIVE, SEED = "a red cube", "blurry", 5
SETTINGS = ["--steps", "2", "-W", "32", "-H", "32", "--distilled-cfg", "5", "--shift", "1.3"]


def _written(result, folder: Path) -> Path:
    assert result.exit_code == 0, result.stderr
    (cell,) = sorted(p for p in folder.rglob("*.png") if "grid" not in p.name)
    return cell


def _same_image(a: Path, b: Path) -> None:
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert read_infotext(a) == read_infotext(b)


@pytest.fixture(scope="module")
def one_shot(tiny_flux, tmp_path_factory):
    from typer.testing import CliRunner

    from sdcli.cli import app

    folder = tmp_path_factory.mktemp("flux-one-shot")
    result = CliRunner().invoke(app, ["txt2img", PROMPT, "-n", NEGATIVE, "-m", str(tiny_flux["flux-dev"]), "--seed",
                                      str(SEED), *SETTINGS, "-o", str(folder)])
    path = _written(result, folder)
    text = read_infotext(path)
    assert "CFG scale: 1, Distilled CFG Scale: 5, Shift: 1.3" in text
    assert "Sampler: Euler, Schedule type: Simple" in text
    return path


@pytest.fixture(scope="module")
def flux_server(tiny_flux, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("flux-serve") / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(tiny_flux["flux-dev"]), "--port",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    with wait_for(proc, url, log, auth=False):
        yield url


def test_prompt_file(one_shot, tiny_flux, tmp_path, cli):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f'--prompt "{PROMPT}" --negative_prompt "{NEGATIVE}"\n', encoding="utf-8")
    path = _written(cli("batch", prompts, "-m", tiny_flux["flux-dev"], "--seed", SEED, *SETTINGS,
                        "-o", tmp_path / "out"), tmp_path / "out")
    _same_image(one_shot, path)
    assert read_replay_record(path) == read_replay_record(one_shot)


def test_xyz_cell(one_shot, tiny_flux, tmp_path, cli):
    flags = [s for s in SETTINGS if s not in ("--distilled-cfg", "5")]
    path = _written(cli("xyz", PROMPT, "-n", NEGATIVE, "-m", tiny_flux["flux-dev"], "--x", "Distilled CFG Scale: 5",
                        "--seed", SEED, *flags, "-o", tmp_path / "out"), tmp_path / "out")
    _same_image(one_shot, path)


def test_replay(one_shot, tmp_path, cli):
    path = _written(cli("replay", one_shot, "-o", tmp_path / "out"), tmp_path / "out")
    _same_image(one_shot, path)


def test_webui_api_and_server_client(one_shot, flux_server, tiny_flux, tmp_path, cli):
    body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 2, "width": 32, "height": 32,
            "distilled_cfg_scale": 5, "shift": 1.3}
    request = urllib.request.Request(flux_server + "/sdapi/v1/txt2img", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.load(response)
    image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(Image.open(one_shot)))
    assert json.loads(answer["info"])["infotexts"][0] == read_infotext(one_shot)
    path = _written(cli("txt2img", PROMPT, "-n", NEGATIVE, "-m", tiny_flux["flux-dev"], "--seed", SEED, *SETTINGS,
                        "-o", tmp_path / "out", "--server", flux_server), tmp_path / "out")
    _same_image(one_shot, path)
