"""A JavaScript client from npm against `sdcli serve`: modelfusion's Automatic1111 image generator (what Node apps
use to call a WebUI), installed from tests/server/js's lockfile with `npm ci` into a cache folder outside the
repository, run under node against the session's `sdcli serve` on loopback. Skipped, saying why, where node or npm
is missing or the registry cannot be reached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from tests.server.conftest import decode

pytestmark = pytest.mark.slow
SOURCE = Path(__file__).with_name("js")
MANIFESTS = ("package.json", "package-lock.json")


@pytest.fixture(scope="module")
def js_client() -> Path:
    """The folder holding the installed client and its script (installed once per lockfile)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the JavaScript client cannot run")
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in MANIFESTS)).hexdigest()[:12]
    cache = Path(os.environ.get("SDCLI_JS_CACHE") or Path.home() / ".cache" / "sdcli-tests" / "js-client")
    folder = cache / digest
    if not (folder / ".installed").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in MANIFESTS:
            shutil.copyfile(SOURCE / name, folder / name)
        try:
            done = subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"],
                                  cwd=folder, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci took over 300 s: the npm registry is unreachable or too slow")
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip() and "complete log" not in line]
            pytest.skip(f"npm ci could not install the client (is the npm registry reachable?): "
                        f"{' / '.join(lines[:2]) if lines else done.returncode}")
        (folder / ".installed").touch()
    shutil.copyfile(SOURCE / "a1111_client.mjs", folder / "a1111_client.mjs")
    return folder


def call(folder: Path, url: str, model: str) -> dict:
    done = subprocess.run(["node", str(folder / "a1111_client.mjs"), url, "me:secret", model], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_modelfusion_automatic1111_client_gets_the_image_and_parameters(js_client, server, tiny_pipe,
                                                                        single_thread):
    title = httpx.get(server["url"] + "/sdapi/v1/sd-models", auth=("me", "secret"), timeout=30).json()[0]["title"]
    got = call(js_client, server["url"], title)  # as an app sends it: the model in override_settings
    assert "error" not in got, got
    image = decode(got["image"])
    assert image.format == "PNG" and image.size == (32, 32)
    info, parameters = got["info"], got["parameters"]
    assert info["seed"] == 21 and info["sampler_name"] == "Euler a" and info["steps"] == 2
    assert info["cfg_scale"] == 6 and info["sd_model_name"] == "tiny-sd1" and info["prompt"] == "a lighthouse"
    assert parameters == {}  # the client's response schema keeps the object and drops its keys
    assert info["all_seeds"] == [21] and info["width"] == 32 and info["height"] == 32
    assert "Seed: 21" in image.info["parameters"]
    request = GenerationRequest(prompt="a lighthouse", seed=21, steps=2, width=32, height=32, sampler="Euler a",
                                cfg_scale=6)
    want = next(iter(run(request, tiny_pipe, validate(request), model_name="m", model_hash="0" * 10))).image
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(want))


def test_modelfusion_reports_the_servers_error(js_client, server):
    got = call(js_client, server["url"], "nope")
    assert got["status"] == 422
    assert got["error"].startswith("sd_model_checkpoint: model 'nope' is not served here")
