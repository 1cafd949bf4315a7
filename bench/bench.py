"""`make bench`: sdcli against hand-written diffusers code, measured honestly (see bench/README.md).

Every comparison is interleaved (a, b, b, a, ...) after a warm-up, reports min and median
of each path and the ratio of medians with its spread, and says "inconclusive" when the
spread is larger than the effect. Each measured path runs in its own process with the
same environment (threads, offline hub, caches). Results: bench-out/results.json and a
copy in bench/results.json.

  python bench/bench.py --quick          # CI scale: tiny model only, 2 repetitions
  python bench/bench.py                  # full: adds a full-size SD1.5-architecture model at 256 px
  python bench/bench.py --only startup,grid
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grouping import batch_grouping  # noqa: E402
from real_size import tiny_real_size  # noqa: E402
from scripts import MINIMAL, PROMPT, build_full_sd15, write_grid_inputs  # noqa: E402
from serve_load import load  # noqa: E402
from stats import compare, interleave, summary  # noqa: E402
from steady import steady  # noqa: E402

SECTIONS = ("startup", "steady", "server", "load", "rss", "grid", "batch-grouping", "tiny-real-size")


class Runner:
    """Runs commands in fresh processes; remembers each one's wall time and peak RSS.

    Peak RSS comes from GNU time (/usr/bin/time -f %M), not from this process's wait4:
    on Linux a child's maxrss starts at its parent's size at fork, and this process
    holds torch after building the models.
    """

    TIME = "/usr/bin/time"

    def __init__(self, env: dict[str, str], work: Path):
        self.env = env
        self.rss_file = work / ".rss"
        self.last_rss_mb: float | None = None
        self.last_cpu_s = 0.0  # user + system CPU seconds of the last command (and its children)

    def run(self, cmd: list[str], cwd: Path | None = None) -> tuple[float, str]:
        import resource

        wrapped = [self.TIME, "-f", "%M", "-o", str(self.rss_file), *cmd] if Path(self.TIME).exists() else cmd
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(wrapped, capture_output=True, env=self.env, cwd=cwd, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(map(str, cmd[:5]))} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        try:
            self.last_rss_mb = int(self.rss_file.read_text().split()[-1]) / 1024
        except (OSError, ValueError, IndexError):
            self.last_rss_mb = None
        return wall, proc.stdout


def weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20


# -- sections ---------------------------------------------------------------------------------

def startup(r: Runner, work: Path, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One-shot first image: `sdcli txt2img` vs the minimal script vs `diffusers-cli run`."""
    out = work / "startup"
    steps, size = str(args.steps), "64"
    sdcli = [sys.executable, "-m", "sdcli", "txt2img", PROMPT, "-m", str(model), "--steps", steps, "-W", size,
             "-H", size, "--seed", "1", "-o", str(out / "sdcli")]
    minimal = [sys.executable, "-c", MINIMAL, str(model), PROMPT, steps, size, str(out / "minimal.png")]
    cli = shutil.which("diffusers-cli", path=str(Path(sys.executable).parent))
    cpu: dict[str, list[float]] = {"sdcli txt2img": [], "minimal diffusers script": []}

    def timed(name: str, cmd: list[str]) -> Any:
        def measure() -> float:
            wall = r.run(cmd)[0]
            cpu[name].append(r.last_cpu_s)
            return wall
        return measure

    paths = {"sdcli txt2img": timed("sdcli txt2img", sdcli),
             "minimal diffusers script": timed("minimal diffusers script", minimal)}
    note = None
    if cli and "run" in subprocess.run([cli, "--help"], capture_output=True, text=True).stdout:
        kwargs = json.dumps({"prompt": PROMPT, "num_inference_steps": args.steps, "width": 64, "height": 64})
        dcli = [cli, "run", "-m", str(model), "--device-map", "cpu", "--dtype", "fp32", "--seed", "1",
                "--pipeline-kwargs", kwargs, "-o", str(out / "dcli.png")]
        paths["diffusers-cli run"] = lambda: r.run(dcli)[0]
        note = "diffusers-cli run uses the model's own scheduler (PNDM); sdcli and the script use DPM++ 2M Karras"
    else:
        note = "diffusers-cli has no `run` command in this diffusers: not compared"
    times = interleave(paths, args.repeat, warmup=1)
    result = {name: summary(t) for name, t in times.items()}
    result["sdcli vs minimal script"] = compare(times["sdcli txt2img"], times["minimal diffusers script"],
                                                target=0.95)
    if "diffusers-cli run" in times:
        result["sdcli vs diffusers-cli run"] = compare(times["sdcli txt2img"], times["diffusers-cli run"])
    measured = {k: v[-args.repeat:] for k, v in cpu.items()}  # without the warm-up run
    result["cpu"] = {**{k: summary(v) for k, v in measured.items()},
                     "sdcli vs minimal script": compare(measured["sdcli txt2img"],
                                                        measured["minimal diffusers script"], target=0.95)}
    result["note"] = note
    return result


def server(r: Runner, work: Path, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A shell loop of N `sdcli txt2img`: one-shot processes vs `--server` to a warm `sdcli serve`."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sdcli", "serve", "-m", str(model), "--port", str(port)],
                            env=r.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/sdapi/v1/options", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("bench: sdcli serve did not start")
        server_start = time.perf_counter() - started
        counter = iter(range(10**6))

        def shell_loop(extra: list[str]) -> float:
            out = work / "server" / f"run{next(counter)}"
            start = time.perf_counter()
            for i in range(args.loop_images):
                r.run([sys.executable, "-m", "sdcli", "txt2img", f"{PROMPT} {i}", "-m", str(model), "--steps",
                       str(args.steps), "--seed", str(i), "-o", str(out), *extra])
            return (time.perf_counter() - start) / args.loop_images

        times = interleave({"--server loop": lambda: shell_loop(["--server", url]),
                            "one-shot loop": lambda: shell_loop([])}, args.repeat, warmup=1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"images_per_loop": args.loop_images, "server_start_s": round(server_start, 3),
            **{k: summary(v) for k, v in times.items()},
            "server vs one-shot (per image)": compare(times["--server loop"], times["one-shot loop"])}


def rss(r: Runner, work: Path, models: dict[str, tuple[Path, int]], args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of one `sdcli txt2img` against the size of the model's weights."""
    results = {}
    for name, (model, size) in models.items():
        steps = args.steps if name == "tiny" else args.full_steps
        r.run([sys.executable, "-m", "sdcli", "txt2img", PROMPT, "-m", str(model), "--steps", str(steps), "-W",
               str(size), "-H", str(size), "-o", str(work / "rss" / name)])
        peak = r.last_rss_mb or 0.0
        results[name] = {"weights_mb": round(weights_mb(model), 1), "peak_rss_mb": round(peak, 1),
                         "rss_over_weights": round(peak / weights_mb(model), 3)}
    return results


def grid(r: Runner, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Contact sheet memory: `write_grid` over N images of 512 px, peak RSS of its process."""
    manifest = write_grid_inputs(work / "grid", args.grid_images, 512)
    code = ("import sys; from pathlib import Path; from sdcli.batch.grid import write_grid; "
            "print(write_grid(Path(sys.argv[1])))")
    wall, out = r.run([sys.executable, "-c", code, str(manifest)])
    peak = r.last_rss_mb or 0.0
    r.run([sys.executable, "-c", "import sdcli.batch.grid, PIL.Image"])
    baseline = r.last_rss_mb or 0.0
    return {"images": args.grid_images, "image_px": 512, "peak_rss_mb": round(peak, 1),
            "interpreter_baseline_rss_mb": round(baseline, 1), "wall_s": round(wall, 2),
            "target_rss_mb": 300, "target_met": peak < 300, "sheet": out.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI scale: tiny model, 2 repetitions, small counts")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--repeat", type=int, help="interleaved repetitions per comparison (default 5; quick 2)")
    parser.add_argument("--steps", type=int, default=20, help="steps on the tiny model")
    parser.add_argument("--full-steps", type=int, default=4, help="steps on the full-size model (256 px)")
    parser.add_argument("--full-modes", default="txt2img,img2img,inpaint",
                        help="modes measured on the full-size model (each costs minutes on a CPU)")
    parser.add_argument("--images", type=int, help="steady: measured pairs per row on the tiny model "
                        "(default 48; quick 8; full-size: an eighth, at least 5)")
    parser.add_argument("--block", type=int, default=4, help="steady, tiny model: pairs compared as one block")
    parser.add_argument("--loop-images", type=int, help="txt2img runs per shell loop (default 5; quick 2)")
    parser.add_argument("--grid-images", type=int, default=800)
    parser.add_argument("--group-sizes", default="1,2,4", help="batch-grouping: --group sizes (the first is the "
                        "baseline)")
    parser.add_argument("--grouping-models", default="tiny,full-sd15", help="batch-grouping: the models measured")
    parser.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "1"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.repeat = args.repeat or (2 if args.quick else 5)
    args.images = args.images or (8 if args.quick else 48)
    args.loop_images = args.loop_images or (2 if args.quick else 5)
    if args.quick:
        args.grid_images = min(args.grid_images, 100)
    only = [s for s in args.only.split(",") if s]
    if bad := [s for s in only if s not in SECTIONS]:
        sys.exit(f"bench: --only: unknown section(s) {bad}; choose from {SECTIONS}")

    from sdcli.models.tiny import build_tiny

    work = args.out.resolve()
    for sub in ("startup", "steady", "server", "rss", "grid"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    tiny = work / "tiny-sd1"
    if not (tiny / "model_index.json").exists():
        build_tiny(tiny)
    models = {"tiny": (tiny, 64)}
    if not args.quick and ({"steady", "rss"} & set(only) or "batch-grouping" in only
                           and "full-sd15" in args.grouping_models):
        models["full-sd15"] = (build_full_sd15(work / "full-sd15"), 256)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "SDCLI_CACHE": str(work / "cache"), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    runner = Runner(env, work)
    results: dict[str, Any] = {
        "settings": {"quick": args.quick, "repeat": args.repeat, "steps": args.steps, "full_steps": args.full_steps,
                     "full_modes": args.full_modes, "images": args.images, "loop_images": args.loop_images,
                     "threads": args.threads, "device": "cpu", "machine": platform.machine(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    steps = {"startup": lambda: startup(runner, work, tiny, args),
             "steady": lambda: steady(runner, work, models, args),
             "server": lambda: server(runner, work, tiny, args),
             "load": lambda: load(env, tiny, args.quick),
             "rss": lambda: rss(runner, work, models, args),
             "grid": lambda: grid(runner, work, args),
             "batch-grouping": lambda: batch_grouping(
                 runner, work, {k: v for k, v in models.items() if k in args.grouping_models.split(",")},
                 tuple(int(g) for g in args.group_sizes.split(",")), args.repeat,
                 {"tiny": args.steps, "full-sd15": args.full_steps}),
             "tiny-real-size": lambda: tiny_real_size(lambda cmd: (runner.run(cmd)[0], runner.last_cpu_s), work,
                                                      max(3, args.repeat))}
    for name in only:
        print(f"bench: {name} ...", file=sys.stderr)
        results[name] = steps[name]()
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    # bench/results.json keeps the sections this run did not measure (--only), each with the settings it had.
    kept = Path(__file__).resolve().parent / "results.json"
    recorded = json.loads(kept.read_text()) if kept.is_file() else {}
    if set(only) != set(SECTIONS):
        results["settings"]["sections"] = f"{', '.join(only)}: this run; the others as recorded before"
    kept.write_text(json.dumps({**recorded, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
