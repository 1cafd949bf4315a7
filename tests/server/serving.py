"""Run `sdcli serve` in a subprocess for a test: a free port, a bounded wait until it answers, a clean stop."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def wait_for(proc: subprocess.Popen, url: str, log, auth: bool = True):
    """Wait (bounded) until the `sdcli serve` in `proc` answers at `url`; stop it when the block ends."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            request = urllib.request.Request(url + "/sdapi/v1/sd-models")
            urllib.request.urlopen(request, timeout=2)
            if not auth:
                break
        except urllib.error.HTTPError as exc:  # 401: up and asking for credentials
            if exc.code == 401:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sdcli serve did not start:\n{log.read_text()}")
        time.sleep(0.3)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextmanager
def in_thread(app, port: int | None = None):
    """`app` served by uvicorn on 127.0.0.1 in a thread of this process (a real socket, the session's loaded
    models); yields its URL; stopped (bounded) when the block ends."""
    import threading

    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
