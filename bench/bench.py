"""`make bench`: the same prompts three ways on one tiny checkpoint, side by side.

1. `sdcli batch` on a prompt file (one process, one model load);
2. the same prompts as separate `sdcli txt2img` processes;
3. a hand-written diffusers loop (same scheduler, size, steps, CPU generators, PNG files).

Each path runs in its own process with the same environment. Batch and loop run
`--repeat` times, alternating, and the best run of each counts (a shared machine
adds noise, never speed). Two numbers per path: wall time per image (process start,
imports and model load included) and steady time per image (generation and file
writing only: the batch's manifest seconds, the loop's timed iterations).
Prints a ratio table and writes bench-out/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOOP = r"""
import json, sys, time
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
model, prompts_file, out, steps, size, seed = sys.argv[1:7]
prompts = [p for p in open(prompts_file).read().splitlines() if p]
pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False,
                                               use_safetensors=True, local_files_only=True)
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
pipe.set_progress_bar_config(disable=True)
times = []
for i, prompt in enumerate(prompts):
    start = time.perf_counter()
    image = pipe(prompt, num_inference_steps=int(steps), guidance_scale=7.0, width=int(size), height=int(size),
                 generator=torch.Generator("cpu").manual_seed(int(seed) + i)).images[0]
    image.save(f"{out}/{i:05d}.png")
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times}))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} ... failed:\n{proc.stderr}")
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "1"),
                        help="CPU threads for every path (default 1: stable on a busy machine)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    from sdcli.models.tiny import build_tiny

    work = args.out
    shutil.rmtree(work / "runs", ignore_errors=True)
    (work / "runs").mkdir(parents=True)
    model = work / "tiny-sd1"
    if not (model / "model_index.json").exists():
        build_tiny(model)
    prompts = [f"bench prompt {n}, a lighthouse at dusk, oil painting" for n in range(args.prompts)]
    prompt_file = work / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "SDCLI_CACHE": str(work / "cache")}
    common = ["-m", str(model), "--steps", str(args.steps), "-W", str(args.size), "-H", str(args.size)]
    sdcli = [sys.executable, "-m", "sdcli"]
    n = len(prompts)

    # 1 and 3, alternating; the best of --repeat runs counts.
    batch_runs, loop_runs = [], []
    for r in range(args.repeat):
        out = work / "runs" / f"batch{r}"
        wall, _ = timed([*sdcli, "batch", str(prompt_file), *common, "--seed", "0", "-o", str(out)], env)
        records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()[1:]]
        batch_runs.append({"wall": wall, "steady": sum(x["seconds"] for x in records)})
        out = work / "runs" / f"loop{r}"
        out.mkdir()
        wall, stdout = timed([sys.executable, "-c", LOOP, str(model), str(prompt_file), str(out),
                              str(args.steps), str(args.size), "0"], env)
        loop_runs.append({"wall": wall, "steady": sum(json.loads(stdout)["times"])})
    # 2. One process per prompt.
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        timed([*sdcli, "txt2img", *common, "--seed", str(i), "-o", str(work / "runs" / "txt2img"), prompt], env)
    separate = {"wall": time.perf_counter() - start, "steady": None}

    best = {
        "sdcli batch": min(batch_runs, key=lambda x: x["steady"]),
        "separate sdcli txt2img": separate,
        "hand-written diffusers loop": min(loop_runs, key=lambda x: x["steady"]),
    }
    loop = best["hand-written diffusers loop"]
    rows = []
    for name, run in best.items():
        rows.append({
            "path": name,
            "wall_s": round(run["wall"], 3),
            "wall_per_image_s": round(run["wall"] / n, 4),
            "wall_ratio_vs_loop": round(run["wall"] / loop["wall"], 3),
            "steady_per_image_s": None if run["steady"] is None else round(run["steady"] / n, 4),
            "steady_ratio_vs_loop": None if run["steady"] is None else round(run["steady"] / loop["steady"], 3),
        })
    result = {
        "settings": {"prompts": n, "steps": args.steps, "size": args.size, "repeat": args.repeat,
                     "threads": args.threads, "sampler": "DPM++ 2M Karras", "device": "cpu"},
        "rows": rows,
        "runs": {"batch": batch_runs, "loop": loop_runs},
        "target": "sdcli batch steady per-image time within 1.05x of the hand-written loop",
        "target_met": rows[0]["steady_ratio_vs_loop"] <= 1.05,
    }
    (work / "bench.json").write_text(json.dumps(result, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table("path", "wall s", "wall/image s", "x loop (wall)", "steady/image s", "x loop (steady)",
                  title=f"{n} prompts, {args.steps} steps, {args.size}px, {args.threads} thread(s)")
    for row in rows:
        table.add_row(row["path"], f"{row['wall_s']:.2f}", f"{row['wall_per_image_s']:.3f}",
                      f"{row['wall_ratio_vs_loop']:.2f}",
                      "-" if row["steady_per_image_s"] is None else f"{row['steady_per_image_s']:.4f}",
                      "-" if row["steady_ratio_vs_loop"] is None else f"{row['steady_ratio_vs_loop']:.3f}")
    console = Console(width=130)
    console.print(table)
    console.print(f"target (batch steady <= 1.05x loop): {'met' if result['target_met'] else 'NOT met'}; "
                  f"JSON: {work / 'bench.json'}")


if __name__ == "__main__":
    main()
