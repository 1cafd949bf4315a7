"""Behaviour corpus: 81 sdcli commands, their exit codes and the sha256 of every file they write.

It guards refactors that must not change behaviour (the model-layer redesign, modules moving): it
drives only interfaces that survive module moves -- the Typer app `sdcli.cli:app` in-process, the
`sdcli serve` HTTP server in a subprocess (WebUI API over HTTP), and the `--server URL` client --
and imports nothing else from sdcli. 10 `sdcli tiny` runs, 64 CLI commands, 4 WebUI API requests
and 3 `--server` client runs, in about 45 s of CPU. The commands are in commands.py, the expected values and the
readable list of commands in corpus.json. Tiny models come from `sdcli tiny` itself (their files
are in the corpus too); the LoRA, embedding, VAE and input pictures are written here with torch,
safetensors, numpy and Pillow only.

Re-record, on the commit whose behaviour is the reference (and only there):

    SDCLI_RECORD_CORPUS=1 python -m pytest tests/corpus -q

Path and time independence (details in hashing.py): every path lies under one root folder whose
absolute path is padded to exactly ROOT_LEN characters; in every written file that root is replaced
by a fixed token of the same length (so EXIF/WebP sizes and offsets stay as written) and PNG chunk
CRCs are recomputed; manifests, `--json` stdout and the API's `info` lose their time keys and the
manifest's path-dependent plan digest. Everything else is hashed as its exact bytes. The
`.safetensors` files `sdcli tiny` writes get their `__metadata__` keys sorted in place before
anything uses them (safetensors writes that map in a random order in each process, which would
change the single file's `Model hash` from run to run).

`SDCLI_CORPUS_DUMP=DIR` writes every normalised file under DIR, to diff two runs. A failure lists
every command and file that differs. An image whose hash differs but whose print (hashing.py:
metadata exact, 8x8 box means within a level) agrees is listed, not failed: CPUs with other SIMD
kernels move single pixels by a level. When torch, the CPU capability or another recorded library
version differs from corpus.json, the failure says so; the reference is then re-recorded on the
reference commit in the new environment.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.commands import CLI, MODELS, SERVER
from tests.corpus.comparing import compare, environment_hint
from tests.corpus.hashing import (
    ROOT_LEN,
    digest,
    file_hashes,
    image_print,
    image_prints,
    records_hash,
    sort_safetensors_metadata,
)

CORPUS_FILE = Path(__file__).with_name("corpus.json")
RECORD = os.environ.get("SDCLI_RECORD_CORPUS", "") not in ("", "0")
SERVER_START_S = 180
HTTP_TIMEOUT_S = 120


# ---------------------------------------------------------------- the run's inputs, written by the test


def _write_inputs(root: Path) -> None:
    """Input pictures and prompt files: pure arithmetic, no random numbers."""
    import numpy as np
    from PIL import Image

    folder = root / "inputs"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos-bad").mkdir()
    y, x = np.mgrid[0:40, 0:48]
    photo = np.stack([x * 5, y * 6, (x * y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(folder / "photo.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[12:28, 16:32] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    y, x = np.mgrid[0:64, 0:64]
    radius = np.hypot(x - 32, y - 32)
    ring = np.where(np.abs(radius - 20) < 3, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([ring] * 3, axis=-1)).save(folder / "ring.png")
    for n, name in enumerate(("a.png", "b10.png", "b2.png")):  # natural order: a, b2, b10
        Image.fromarray(np.roll(photo[:32, :32], 7 * n, axis=1)).save(folder / "photos" / name)
    Image.fromarray(photo[:32, :32]).save(folder / "photos-bad" / "good.png")
    (folder / "photos-bad" / "truncated.png").write_bytes((folder / "photo.png").read_bytes()[:60])
    (folder / "prompts.txt").write_text(
        "a plain prompt line\n"
        '--prompt "a lighthouse at dusk, (oil painting:1.2)" --negative_prompt "fog" --cfg_scale 6.5\n'
        '--prompt "a red fox" --sampler_name "Euler a" --seed 5 --batch_size 2 --n_iter 2\n'
        '--prompt "a castle" --sampler_name "DPM++ 2M" --scheduler exponential --clip_skip 2 --steps 3\n'
        '--prompt "an oil painting" --init_image photo.png --denoising_strength 0.6 --width 48 --height 40\n'
        '--prompt "a red door" --init_image photo.png --mask mask.png --mask_blur 2 --inpainting_fill 1 '
        "--width 48 --height 40\n"
        '--prompt "a wide beach" --init_image photo.png --left 16 --fill edge\n'
        '--prompt "a hires castle" --enable_hr true --hr_scale 1.5 --hr_upscaler Nearest --denoising_strength 0.5\n')
    (folder / "prompts.jsonl").write_text(
        '{"prompt": "a lighthouse", "negative_prompt": "fog", "steps": 3}\n'
        '{"prompt": "a red fox", "sampler_name": "UniPC", "seed": 40, "batch_size": 2}\n'
        '{"prompt": "a castle", "cfg_scale": 5, "scheduler": "karras", "subseed": 3, "subseed_strength": 0.5}\n')


# Linear layers a kohya LoRA adapts: the UNet's attention projections, the text encoder's self-attention.
LORA_TARGETS = (("lora_unet_", "unet/diffusion_pytorch_model.safetensors",
                 re.compile(r"^(.*attn[12]\.(?:to_q|to_k|to_v|to_out\.0))\.weight$")),
                ("lora_te_", "text_encoder/model.safetensors",
                 re.compile(r"^(text_model\.encoder\.layers\.\d+\.self_attn\.(?:q|k|v|out)_proj)\.weight$")))


def _write_add_ons(root: Path) -> None:
    """A kohya-format LoRA, a WebUI embedding and a VAE (diffusers keys, one file) for the tiny SD1 model,
    from its own tensor names and shapes, with one seeded torch generator."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    model, models_dir = root / "models" / "tiny-sd1", root / "models-dir"
    gen = torch.Generator().manual_seed(0)
    lora: dict[str, Any] = {}
    for prefix, file, pattern in LORA_TARGETS:
        with safe_open(str(model / file), "pt") as fh:
            shapes = {key: fh.get_slice(key).get_shape() for key in fh.keys()}  # noqa: SIM118 (not a dict)
        for key in sorted(shapes):
            if match := pattern.match(key):
                fan_out, fan_in = shapes[key]
                name = prefix + match.group(1).replace(".", "_")
                lora[f"{name}.lora_down.weight"] = torch.randn(4, fan_in, generator=gen) * 0.5
                lora[f"{name}.lora_up.weight"] = torch.randn(fan_out, 4, generator=gen) * 0.5
                lora[f"{name}.alpha"] = torch.tensor(4.0)
    assert len(lora) > 30, "the tiny model's layer names changed: the LoRA adapts nothing"
    (models_dir / "Lora").mkdir(parents=True)
    save_file(lora, str(models_dir / "Lora" / "detail.safetensors"))

    width = json.loads((model / "text_encoder" / "config.json").read_text())["hidden_size"]
    (models_dir / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, width, generator=gen)},
              str(models_dir / "embeddings" / "tinyemb.safetensors"))

    with safe_open(str(model / "vae" / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        vae = {key: fh.get_tensor(key) for key in sorted(fh.keys())}  # noqa: SIM118
    vae = {k: (v * (1 + 0.2 * torch.randn(v.shape, generator=gen))).contiguous() for k, v in vae.items()}
    (models_dir / "VAE").mkdir()
    save_file(vae, str(models_dir / "VAE" / "tinyvae.safetensors"))


# ---------------------------------------------------------------- running the commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`sdcli serve` in a subprocess on 127.0.0.1: started early (it loads while the CLI commands run),
    waited for with a deadline, always killed."""

    def __init__(self, root: Path, places: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "serve.log"
        argv = ["serve", "-m", f"{places['m']}/tiny-sd1", "-m", f"{places['m']}/tiny-sd1-inpaint", "--port",
                str(self.port)]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sdcli", *argv], stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=root)

    def wait(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "/sdapi/v1/sd-models", timeout=5):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sdcli serve did not start:\n{self.log.read_text()}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def _fill(template: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        template = template.replace("{" + key + "}", value)
    return template


def _run_cli(runner: Any, command: str, places: dict[str, str]) -> tuple[int | str, str]:
    from sdcli.cli import app

    argv = shlex.split(_fill(command, places))
    assert argv[0] == "sdcli", command
    result = runner.invoke(app, argv[1:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"exception {type(result.exception).__name__}: {result.exception}", result.stdout
    return result.exit_code, result.stdout


def _post(url: str, command: str, places: dict[str, str]) -> tuple[int | str, dict[str, Any]]:
    """`POST /route {json}`: "b64:PATH" strings in the body become that file's base64."""
    method, route, body = command.split(" ", 2)
    assert method == "POST", command

    def inline(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("b64:"):
            return base64.b64encode(Path(_fill(value[4:], places)).read_bytes()).decode()
        if isinstance(value, list):
            return [inline(v) for v in value]
        return value

    payload = {k: inline(v) for k, v in json.loads(body).items()}
    request = urllib.request.Request(url + route, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError as exc:
        return f"no answer: {exc}", {}


def run_corpus(root: Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run every command under `root`; returns the corpus records and each command's seconds."""
    from typer.testing import CliRunner

    root_s = str(root)
    assert len(root_s) == ROOT_LEN, root_s
    places = {"m": f"{root_s}/models", "d": f"{root_s}/models-dir", "i": f"{root_s}/inputs", "out": f"{root_s}/out"}
    runner = CliRunner()
    records: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}

    # 1. The tiny models, made by `sdcli tiny`; then the inputs and add-ons this test writes.
    _write_inputs(root)
    for entry_id, command, watched in MODELS:
        start = time.perf_counter()
        code, _ = _run_cli(runner, command, places)
        seconds[entry_id] = time.perf_counter() - start
        target = Path(_fill(watched, places))
        for path in [target, *(target.rglob("*.safetensors") if target.is_dir() else [])]:
            if path.suffix == ".safetensors" and path.is_file():
                sort_safetensors_metadata(path)
        records.append({"id": entry_id, "command": command, "exit_code": code, "files": file_hashes(target, root_s)})
    _write_add_ons(root)
    inputs = file_hashes(root / "inputs", root_s)
    inputs |= {f"models-dir/{k}": v for k, v in file_hashes(root / "models-dir", root_s).items()
               if k.split("/")[0] in ("Lora", "embeddings", "VAE")}
    records.insert(0, {"id": "test-inputs", "command": "(written by this test: _write_inputs, _write_add_ons)",
                       "exit_code": 0, "files": inputs})

    # 2. The server loads while the CLI commands run; then the HTTP requests and the --server client.
    server = Server(root, places)
    try:
        for n, (entry_id, command, *watched) in enumerate([*CLI, *SERVER]):
            if n == len(CLI):
                server.wait()
                places["server"] = server.url
            places["o"] = f"{places['out']}/{entry_id}"
            start = time.perf_counter()
            item: dict[str, Any] = {"id": entry_id, "command": command}
            if command.startswith("POST "):
                item["exit_code"], body = _post(server.url, command, places)
                images = [base64.b64decode(image) for image in body.get("images", [])]
                item["files"] = {f"images/{k}.png": digest(data, "image.png", root_s) for k, data in enumerate(images)}
                item["images"] = {f"images/{k}.png": image_print(data, root_s) for k, data in enumerate(images)}
                if body.get("info"):
                    item["stdout"] = records_hash(body["info"], root_s)
            else:
                item["exit_code"], stdout = _run_cli(runner, command, places)
                target = Path(_fill(watched[0] if watched else "{o}", places))
                item["files"], item["images"] = file_hashes(target, root_s), image_prints(target, root_s)
                if "--json" in shlex.split(command):
                    item["stdout"] = records_hash(stdout, root_s)
            seconds[entry_id] = time.perf_counter() - start
            records.append(item)
    finally:
        server.stop()
    return records, seconds


# ---------------------------------------------------------------- the test


def environment() -> dict[str, str]:
    import platform
    from importlib.metadata import version

    import torch

    env = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "torch_threads": str(torch.get_num_threads()), "python": platform.python_version(),
           "machine": platform.machine()}
    for package in ("diffusers", "transformers", "numpy", "pillow", "safetensors", "scipy", "torchsde", "spandrel"):
        try:
            env[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing optional package is recorded as such
            env[package] = "missing"
    return env


def _padded_root(base: Path) -> Path:
    """A folder under `base` whose absolute path is exactly ROOT_LEN characters."""
    base = base.resolve()
    room = ROOT_LEN - len(str(base)) - 1
    if room < 8:
        pytest.fail(f"temp folder path too long for the corpus ({len(str(base))} chars, at most {ROOT_LEN - 9}): "
                    f"{base}; set TMPDIR to a shorter path")
    root = base / ("corpus-" + "r" * (room - 7))
    root.mkdir()
    return root


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_behaviour_corpus(one_thread, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("SDCLI_SERVER", "SDCLI_MODELS_DIR", "SDCLI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with tempfile.TemporaryDirectory(prefix="sdcli-corpus-") as base:
        start = time.perf_counter()
        records, seconds = run_corpus(_padded_root(Path(base)))
        total = time.perf_counter() - start
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    print(f"corpus: {len(seconds)} commands in {total:.1f} s; slowest: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
    env = environment()
    if RECORD:
        about = ("sdcli behaviour corpus, see tests/corpus/test_corpus.py. Placeholders: {m} tiny models, "
                 "{d} WebUI-style models folder, {i} inputs, {out} all outputs, {o} the command's own output "
                 "folder, {server} the sdcli serve URL. files: sha256 of each written file (normalised, see "
                 "hashing.py); stdout: of the --json records or the API's info.")
        CORPUS_FILE.write_text(json.dumps({"about": about, "environment": env, "commands": records}, indent=1,
                                          ensure_ascii=False) + "\n")
        return
    expected = json.loads(CORPUS_FILE.read_text())
    hint = environment_hint(expected["environment"], env)
    if hint:
        print(hint)
    problems, close = compare(expected, records)
    if close:
        print(f"{len(close)} image file(s) differ from {CORPUS_FILE.name} only within the image prints' tolerance: "
              + ", ".join(close))
    if problems:
        pytest.fail(f"{len(problems)} difference(s) from {CORPUS_FILE.name}:\n" + "\n".join(problems)
                    + (f"\n{hint}" if hint else ""))
