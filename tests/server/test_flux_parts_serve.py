"""A Flux transformer file served with its parts from a ComfyUI install (`sdcli serve --comfy-dir`), and the
`--server` client sending `--text-encoder` / `--vae` as names: the same pixels and infotext as the local run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext
from tests.server.serving import free_port, wait_for

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--sampler", "Euler", "--schedule", "simple")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_flux) -> Path:
    """A ComfyUI install holding the tiny Flux dev as a BFL transformer file, its CLIP-L, T5 and VAE files."""
    from sdcli.models.tiny_flux import write_tiny_flux_files

    root = tmp_path_factory.mktemp("comfy")
    files = write_tiny_flux_files(root / "made" / "flux1-dev.safetensors", "flux-dev", 0, "bfl", "F16")
    models = root / "ComfyUI" / "models"
    for sub, names in (("diffusion_models", ["flux1-dev"]), ("text_encoders", ["clip_l", "t5xxl"]), ("vae", ["ae"])):
        (models / sub).mkdir(parents=True)
        for name in names:
            shutil.copy(files["transformer"].parent / f"{name}.safetensors", models / sub)
    return root / "ComfyUI"


@pytest.fixture(scope="module")
def server(comfy, tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "--comfy-dir", str(comfy), "-m", "flux1-dev",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    with wait_for(proc, url, log, auth=False):
        yield url


def _made(result, folder: Path) -> Path:
    assert result.exit_code == 0, result.stderr
    (png,) = folder.glob("*.png")
    return png


def test_server_client_sends_text_encoders_and_vae_by_name(cli, comfy, server, tmp_path):
    parts = ("--text-encoder", "t5xxl", "--text-encoder", "clip_l", "--vae", "ae")
    local = _made(cli("txt2img", "--comfy-dir", comfy, "-m", "flux1-dev", *RUN, *parts, "-o", tmp_path / "l",
                      "a cat"), tmp_path / "l")
    remote_run = cli("txt2img", "--server", server, "-m", "flux1-dev", *RUN, *parts, "-o", tmp_path / "r", "a cat")
    remote = _made(remote_run, tmp_path / "r")
    assert np.array_equal(np.asarray(Image.open(local)), np.asarray(Image.open(remote)))
    assert read_infotext(local) == read_infotext(remote)
    assert "ignored here" not in remote_run.stderr  # no runtime flag was given
    assert read_infotext(remote).endswith("Module 1: ae, Module 2: t5xxl, Module 3: clip_l")
    # Found by the server in its --comfy-dir when not named: the same pixels.
    found = _made(cli("txt2img", "--server", server, "-m", "flux1-dev", *RUN, "-o", tmp_path / "f", "a cat"),
                  tmp_path / "f")
    assert np.array_equal(np.asarray(Image.open(local)), np.asarray(Image.open(found)))


def test_server_client_refuses_a_local_text_encoder_file(cli, comfy, server, tmp_path):
    local_file = comfy / "models" / "text_encoders" / "clip_l.safetensors"
    result = cli("txt2img", "--server", server, "-m", "flux1-dev", *RUN, "--text-encoder", local_file,
                 "-o", tmp_path / "o", "a cat")
    assert result.exit_code == 2
    assert f"--text-encoder: {local_file} is a file here; a server takes only names" in result.stderr
    assert not (tmp_path / "o").exists()
    unknown = cli("txt2img", "--server", server, "-m", "flux1-dev", *RUN, "--text-encoder", "nope",
                  "-o", tmp_path / "u", "a cat")
    assert unknown.exit_code == 2 and "--text-encoder" in unknown.stderr and "nope" in unknown.stderr
    assert not (tmp_path / "u").exists()
