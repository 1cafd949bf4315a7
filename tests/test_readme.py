"""Every ```sh block of the README runs as written (on the demo model), unless marked to skip.

A block preceded by `<!-- readme-test: skip (reason) -->` is skipped explicitly, with its
reason; every other block runs in bash, in order, in one scratch folder (later blocks may
use the files of earlier ones), with a copy of examples/ and `sdcli` on PATH: a shim that
hands its arguments to the real CLI running in this process (see serve). examples/ci-smoke.sh
runs too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?:<!-- readme-test: skip \((?P<skip>[^)]*)\) -->\n)?```sh\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[int, str, str | None]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(text[: m.start("code")].count("\n") + 1, m["code"], m["skip"]) for m in _BLOCK.finditer(text)]


SHIM = """\
import json, os, socket, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect({sock!r})
data = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
conn.sendall(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "stdin": data.decode("latin-1")}}).encode())
conn.shutdown(socket.SHUT_WR)
reply = json.loads(b"".join(iter(lambda: conn.recv(65536), b"")))
sys.stdout.buffer.write(reply["out"].encode("latin-1"))
sys.stderr.buffer.write(reply["err"].encode("latin-1"))
sys.exit(reply["code"])
"""


def serve(sock: Path) -> None:
    """Run each `sdcli` call of the README in this process: torch is imported and the demo model loaded once,
    so the README's thirty-odd commands take seconds, not a process start each."""
    from typer.testing import CliRunner

    from sdcli.cli import app

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.listen()
    while True:
        conn, _ = server.accept()
        with conn:
            request = json.loads(_receive(conn))
            here = os.getcwd()
            os.chdir(request["cwd"])
            try:
                result = CliRunner().invoke(app, request["argv"], input=request["stdin"].encode("latin-1"))
            finally:
                os.chdir(here)
            conn.sendall(json.dumps({"out": result.stdout_bytes.decode("latin-1"),
                                     "err": result.stderr_bytes.decode("latin-1"),
                                     "code": result.exit_code}).encode())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder that looks like a fresh clone's root to the README: examples/, `sdcli` and `python3` on PATH."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", root / "examples")
    bin_dir = root / ".bin"
    bin_dir.mkdir()
    sock = Path(tempfile.mkdtemp()) / "sdcli.sock"  # short: AF_UNIX paths are limited to ~100 bytes
    threading.Thread(target=serve, args=(sock,), daemon=True).start()
    for name, text in (("sdcli", f"#!{sys.executable}\n" + SHIM.format(sock=str(sock))),
                       ("python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("SDCLI_MODEL", None)
    while not sock.exists():
        time.sleep(0.01)
    return root, env


def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def _receive(conn: socket.socket) -> bytes:
    return b"".join(iter(lambda: conn.recv(65536), b""))


def test_the_readme_has_runnable_and_explicitly_skipped_blocks():
    found = blocks()
    assert sum(skip is None for _, _, skip in found) >= 8 and all(skip for _, _, skip in found if skip is not None)


@pytest.mark.parametrize(("line", "code", "skip"), blocks(), ids=[f"README.md:{b[0]}" for b in blocks()])
def test_readme_block_runs_as_written(scratch, line, code, skip):
    if skip:
        pytest.skip(f"README.md:{line}: {skip}")
    root, env = scratch
    proc = run(code, root, env)
    assert proc.returncode == 0, f"README.md:{line} failed:\n{code}\n--- stderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr


def test_examples_ci_smoke_runs(scratch):
    root, env = scratch
    proc = run(f"bash {root / 'examples' / 'ci-smoke.sh'}", root, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok: img2img and inpaint" in proc.stdout
