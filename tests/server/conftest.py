"""Server fixtures: the app in-process on the session's tiny pipelines (no port, no subprocess), and
`sdcli serve` in a real subprocess on 127.0.0.1 (bounded waits, stopped at the end)."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys

import pytest

from tests.cli.conftest import cli  # noqa: F401  (the in-process CLI runner)
from tests.server.serving import free_port, wait_for


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


def interrupt_at(engine, monkeypatch, batch: int, step: int, nth: int = 1):
    """/interrupt sent while batch `batch` (0-based) runs its step `step` for the `nth` time (a hires pass counts
    its steps again); returns the (batch, step) of each step callback of the job."""
    original, calls = type(engine)._step.__get__(engine), []  # the engine's own, not an earlier test wrapper

    def step_and_interrupt(done, total):
        calls.append((engine.progress.job_no, done))
        if calls.count((batch, step)) == nth and calls[-1] == (batch, step):
            engine.interrupt()
        original(done, total)

    monkeypatch.setattr(engine, "_step", step_and_interrupt)
    return calls


@pytest.fixture(scope="session")
def server(tiny_model, tiny_inpaint_model, tmp_path_factory):
    """`sdcli serve` of the tiny SD1 and inpainting models on a free port, behind --api-auth me:secret."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(tiny_model), "-m",
                                 str(tiny_inpaint_model), "--port", str(port), "--api-auth", "me:secret"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    with wait_for(proc, url, log):
        yield {"url": url, "port": port, "auth_url": f"http://me:secret@127.0.0.1:{port}"}


@pytest.fixture(scope="session")
def server_models(tmp_path_factory, models_dir, tiny_xl):
    """A server's models folder: ESRGAN/tiny-4x, Stable-diffusion/refiner-sf (the tiny SDXL refiner as a single
    file) and the Lora/, embeddings/ and VAE/ of the `models_dir` fixture; plus an upscaler file outside it."""
    from sdcli.models.tiny_assets import write_tiny_upscaler

    base = tmp_path_factory.mktemp("server-models")
    root = base / "models"
    write_tiny_upscaler(root / "ESRGAN" / "tiny-4x.safetensors")
    (root / "Stable-diffusion").mkdir()
    (root / "Stable-diffusion" / "refiner-sf.safetensors").symlink_to(tiny_xl["refiner_file"])
    for kind in ("Lora", "embeddings", "VAE"):
        (root / kind).symlink_to(models_dir / kind, target_is_directory=True)
    return {"root": root, "elsewhere": write_tiny_upscaler(base / "elsewhere-4x.safetensors", seed=1)}


@pytest.fixture(scope="session")
def webui_models(tmp_path_factory, models_dir):
    """A models folder: the `models_dir` fixture's LoRAs, embedding and VAE, a tiny 4x ESRGAN, a pickled embedding."""
    from sdcli.models.tiny_assets import write_tiny_upscaler

    root = tmp_path_factory.mktemp("catalog") / "models"
    for kind in ("Lora", "embeddings", "VAE", "Stable-diffusion"):
        (root / kind).mkdir(parents=True)
        for item in (models_dir / kind).iterdir():
            (root / kind / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (root / "embeddings" / "old.pt").write_bytes(b"not read")
    write_tiny_upscaler(root / "ESRGAN" / "4x-tiny.safetensors")
    return root


@pytest.fixture(scope="module")
def folder_engine(tiny_model, tiny_inpaint_model, tiny_pipe, tiny_inpaint_pipe, webui_models):
    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.engine import Engine

    pipes = {tiny_model.resolve(): tiny_pipe, tiny_inpaint_model.resolve(): tiny_inpaint_pipe}
    return Engine.from_specs([str(tiny_model), str(tiny_inpaint_model)], RuntimeOptions(), models_dir=str(webui_models),
                             load=lambda ref, plan: pipes[ref.path])


@pytest.fixture
def api(folder_engine):
    from fastapi.testclient import TestClient

    from sdcli.server.app import Limits, create_app

    folder_engine.current = folder_engine.models[0]
    folder_engine.options.clear()
    app = create_app(folder_engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4),
                     flags={"listen": False, "port": 7861})
    return TestClient(app)
