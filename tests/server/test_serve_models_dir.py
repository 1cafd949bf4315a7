"""`sdcli serve -m BASE -m REFINER --models-dir DIR` in a real subprocess, driven by the CLI's `--server`:
--refiner and ESRGAN names give the local run's pixels and records; flags that cannot go are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sdcli.io.metadata import read_infotext, read_replay_record
from tests.images import pixels
from tests.server.serving import free_port, wait_for

XL = ("a lighthouse", "--steps", "4", "--seed", "3", "--json")


@pytest.fixture(scope="module")
def xl_server(tiny_xl, server_models, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve-xl") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(tiny_xl["base"]), "-m",
                                 str(tiny_xl["refiner"]), "--models-dir", str(server_models["root"]),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    with wait_for(proc, url, log, auth=False):
        yield url


def run_both(cli, tmp_path, url, *args, local_extra=()):
    local = cli("txt2img", *args, *local_extra, "-o", tmp_path / "local")
    remote = cli("txt2img", *args, "-o", tmp_path / "remote", "--server", url)
    assert local.exit_code == 0 and remote.exit_code == 0, local.stderr + remote.stderr
    return json.loads(local.stdout), json.loads(remote.stdout)


def assert_same_image_and_records(a, b):
    assert np.array_equal(pixels(a["path"]), pixels(b["path"]))
    assert read_infotext(a["path"]) == read_infotext(b["path"])
    assert read_replay_record(a["path"]) == read_replay_record(b["path"])
    assert {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}


@pytest.mark.parametrize("how", ["served path", "models folder name"])
def test_server_refiner_gives_the_local_pixels_and_records(xl_server, cli, tiny_xl, server_models, tmp_path,
                                                           single_thread, how):
    refiner = str(tiny_xl["refiner"]) if how == "served path" else "refiner-sf"
    folder = () if how == "served path" else ("--models-dir", server_models["root"])
    a, b = run_both(cli, tmp_path, xl_server, *XL, "-m", tiny_xl["base"], "--refiner", refiner,
                    "--refiner-switch", "0.5", local_extra=folder)
    assert "Refiner: tiny-xl-refiner [" in b["infotext"] and "Refiner switch at: 0.5" in b["infotext"]
    assert_same_image_and_records(a, b)
    plain = cli("txt2img", *XL, "-m", tiny_xl["base"], "-o", tmp_path / "plain", "--server", xl_server)
    assert not np.array_equal(pixels(json.loads(plain.stdout)["path"]), pixels(b["path"]))


def test_server_hires_upscaler_by_name_gives_the_local_pixels_and_records(xl_server, cli, tiny_xl, server_models,
                                                                          tmp_path, single_thread):
    a, b = run_both(cli, tmp_path, xl_server, *XL, "-m", tiny_xl["base"], "--hires", "--hires-scale", "1.5",
                    "--hires-steps", "2", "--hires-upscaler", "tiny-4x",
                    local_extra=("--models-dir", server_models["root"]))
    assert "Hires upscaler: tiny-4x" in b["infotext"] and pixels(b["path"]).shape[:2] == (96, 96)
    assert_same_image_and_records(a, b)


@pytest.mark.parametrize("flags, message", [
    (("--refiner", "{elsewhere}"), "--refiner: '{elsewhere}' is a path but not a model served here"),
    (("--hires", "--hires-upscaler", "{elsewhere}"), "--hires-upscaler: {elsewhere} is a file here"),
    (("--hires", "--hires-upscaler", "4x-UltraSharp"), "--hires-upscaler: no upscaler named '4x-UltraSharp'"),
    (("--lora", "{root}/Lora/detail.safetensors:0.5"), "--lora: {root}/Lora/detail.safetensors is a file here"),
    (("--vae", "{root}/VAE/tinyvae.safetensors"), "--vae: {root}/VAE/tinyvae.safetensors is a file here"),
    (("--models-dir", "{root}"), "--models-dir (or SDCLI_MODELS_DIR): not sent to a server"),
    (("--no-half-vae",), "--no-half-vae: not sent to a server"),
    (("--controlnet", "{elsewhere}", "--control-image", "{elsewhere}"), "--server: --controlnet units are not sent"),
])
def test_flags_that_cannot_go_to_the_server_are_refused_in_one_line(xl_server, cli, tiny_xl, server_models,
                                                                     tmp_path, flags, message):
    values = {"{root}": str(server_models["root"]), "{elsewhere}": str(server_models["elsewhere"])}
    fill = lambda text: next(iter([text.replace(k, v) for k, v in values.items() if k in text]), text)  # noqa: E731
    result = cli("txt2img", *XL, "-m", tiny_xl["base"], *map(fill, flags), "-o", tmp_path, "--server", xl_server)
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {fill(message)}"), result.stderr
    assert not list(tmp_path.rglob("*.png"))
