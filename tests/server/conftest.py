"""Server fixtures: the app in-process on the session's tiny pipelines (no port, no subprocess), and
`sdcli serve` in a real subprocess on 127.0.0.1 (bounded waits, stopped at the end)."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.cli.conftest import cli  # noqa: F401  (the in-process CLI runner)


@pytest.fixture(scope="module")
def engine(tiny_model, tiny_inpaint_model, tiny_pipe, tiny_inpaint_pipe):
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.engine import Engine

    pipes = {tiny_model.resolve(): tiny_pipe, tiny_inpaint_model.resolve(): tiny_inpaint_pipe}
    return Engine.from_specs([str(tiny_model), str(tiny_inpaint_model)], RuntimeOptions(),
                             load=lambda ref, plan: pipes[ref.path])


@pytest.fixture
def client(engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import Limits, create_app

    engine.current = engine.models[0]
    engine.options["CLIP_stop_at_last_layers"] = 1
    return TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))


def b64png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data)))


START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tiny_model, tiny_inpaint_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(tiny_model), "-m",
                                 str(tiny_inpaint_model), "--port", str(port), "--api-auth", "me:secret"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            request = urllib.request.Request(url + "/sdapi/v1/sd-models")
            urllib.request.urlopen(request, timeout=2)
        except urllib.error.HTTPError as exc:  # 401: up and asking for credentials
            if exc.code == 401:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sdcli serve did not start:\n{log.read_text()}")
        time.sleep(0.3)
    yield {"url": url, "port": port, "auth_url": f"http://me:secret@127.0.0.1:{port}"}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
