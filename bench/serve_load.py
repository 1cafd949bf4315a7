"""`make bench`'s `load` row: `sdcli serve` of the tiny model under 8 concurrent WebUI API clients (loopback).

Each client sends its requests one after another (own seed and prompt); the row reports requests per second,
p50/p95 latency, every response checked against its own request (crossed = 0, lost = 0), and the server's
RSS sampled every 100 requests over a longer run (flat: the growth after warm-up).
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLIENTS = 8


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _hammer(url: str, each: int, steps: int, on_done: Any = None) -> tuple[list[float], int, int, float]:
    """CLIENTS threads x `each` requests: (latencies, crossed, lost, wall seconds)."""
    latencies: list[float] = []
    crossed, lost = [0], [0]
    lock = threading.Lock()

    def client(c: int) -> None:
        for n in range(each):
            seed = 100_000 * c + n
            body = {"prompt": f"a lighthouse, client {c} request {n}", "seed": seed, "steps": steps, "width": 64,
                    "height": 64, "sampler_name": "Euler"}
            start = time.perf_counter()
            try:
                info = json.loads(_post(url + "/sdapi/v1/txt2img", body)["info"])
                ok = info["all_seeds"] == [seed] and info["prompt"] == body["prompt"] and \
                    f"Seed: {seed}," in info["infotexts"][0]
            except (OSError, urllib.error.HTTPError, KeyError, ValueError):
                with lock:
                    lost[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
                crossed[0] += not ok
            if on_done is not None:
                on_done()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, crossed[0], lost[0], time.perf_counter() - started


def load(env: dict[str, str], model: Path, quick: bool) -> dict[str, Any]:
    """The row: 8 clients x 50 requests (quick: x 5), then 1,000 requests (quick: 200) for the RSS."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(model), "--port", str(port),
                             "--queue-size", str(CLIENTS)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/sdapi/v1/progress", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("bench: sdcli serve did not start")
        each, total, steps = (5, 200, 4) if quick else (50, 1000, 4)
        _hammer(url, 1, steps)  # warm-up
        latencies, crossed, lost, wall = _hammer(url, each, steps)
        quantiles = statistics.quantiles(latencies, n=20)
        samples: list[float] = []
        count = [0]
        lock = threading.Lock()

        def sample() -> None:
            with lock:
                count[0] += 1
                if count[0] % 100 == 0:
                    samples.append(round(_rss_mb(proc.pid), 1))

        _, crossed_rss, lost_rss, _ = _hammer(url, total // CLIENTS, steps, sample)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    settled = samples[min(2, len(samples) - 1):]
    return {"clients": CLIENTS, "requests": len(latencies) + lost, "steps": steps, "size": 64,
            "requests_per_s": round(len(latencies) / wall, 2), "p50_s": round(statistics.median(latencies), 4),
            "p95_s": round(quantiles[18], 4), "crossed": crossed + crossed_rss, "lost": lost + lost_rss,
            "rss_requests": total, "rss_mb_every_100": samples,
            "rss_growth_after_warmup_mb": round(settled[-1] - settled[0], 1) if settled else None}
