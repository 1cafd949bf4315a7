"""`make bench` row `batch-grouping`: seconds per image of `sdcli batch` with consecutive lines joined into
one batched call (`--group G`) against one call per line (`--group 1`), on the same prompt file.

Tiny model: the file has a warm-up line first (another size, so it never joins the measured lines) and then
`n` lines that differ only in their prompts and seeds. A path's figure is over the measured lines only: wall
seconds (the manifest's per-item seconds: its share of the call plus its PNG write) and CPU seconds (this
process's, around each pipeline call, via scripts.BATCH_CPU) per image. Paths run interleaved, each in a
fresh process. Full-size model: one process (IN_PROCESS), the model loaded once, the runner's whole
run_batch timed per path (the same prompt file without the warm-up line, which runs once first).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from scripts import BATCH_CPU
from stats import compare, interleave, summary

PROMPTS = ("a lighthouse at dusk, oil painting", "a red fox in the snow, photograph",
           "a bowl of fruit on a wooden table", "a castle on a hill under a stormy sky")


def batch_grouping(r: Any, work: Path, models: dict[str, tuple[Path, int]], groups: tuple[int, ...],
                   repeat: int, steps: dict[str, int]) -> dict[str, Any]:
    """Per model: each --group size's seconds per image, and each size > 1 against --group 1."""
    results: dict[str, Any] = {}
    for name, (model, size) in models.items():
        n = max(groups)
        if name != "tiny":  # loading 4 GB once per path and repetition would cost more than the measurement
            results[name] = in_process(r, work, name, model, size, groups, repeat, steps[name], n)
            continue
        prompts = work / f"grouping-{name}.txt"
        lines = [f"--prompt 'warm-up' --width {size // 2} --height {size // 2}"]
        lines += [f"--prompt '{PROMPTS[i % len(PROMPTS)]} {i}' --width {size} --height {size}" for i in range(n)]
        prompts.write_text("\n".join(lines) + "\n")
        for g in groups:  # this model's folders only: another model may be measured at the same time
            shutil.rmtree(work / "grouping" / f"{name}-{g}", ignore_errors=True)
        cpu: dict[str, list[float]] = {f"--group {g}": [] for g in groups}
        paths = {f"--group {g}": _path(r, work / "grouping" / f"{name}-{g}", prompts, model, g, steps[name],
                                       cpu[f"--group {g}"]) for g in groups}
        times = interleave(paths, repeat, warmup=0)
        one = f"--group {groups[0]}"
        results[name] = {
            "images": n, "steps": steps[name], "size": size, "seconds_per_image": {k: summary(v) for k, v in
                                                                                 times.items()},
            "cpu_seconds_per_image": {k: summary(v) for k, v in cpu.items()},
            **{f"{k} vs {one}": {"wall": compare(times[k], times[one]), "cpu": compare(cpu[k], cpu[one])}
               for k in times if k != one}}
    return results


def _path(r: Any, out: Path, prompts: Path, model: Path, group: int, steps: int, cpu: list[float]) -> Any:
    """One measured path: `sdcli batch --group G` in a fresh process; its wall and CPU seconds per image."""
    counter = iter(range(10**6))

    def run() -> float:
        folder = out / f"run{next(counter)}"
        cpu_file = out.parent / f"cpu-{out.name}.json"
        out.mkdir(parents=True, exist_ok=True)
        r.env["SDCLI_BENCH_CPU"] = str(cpu_file)
        r.run([sys.executable, "-c", BATCH_CPU, "batch", str(prompts), "-m", str(model), "--steps", str(steps),
               "--seed", "0", "--group", str(group), "-o", str(folder)])
        records = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
        measured = [x["seconds"] for x in records if x.get("type") == "item" and x["line"] > 1]
        calls = json.loads(cpu_file.read_text())[1:]  # the warm-up line's call first
        cpu.append(sum(calls) / len(measured))
        return sum(measured) / len(measured)

    return run


# The full-size model in one process: loaded once, then `sdcli batch`'s runner (run_batch, the loaded model
# injected) on the same prompt file with each --group size in turn, interleaved; CPU and wall seconds per image.
IN_PROCESS = r"""
import json, sys, time
from pathlib import Path
from sdcli.batch.runner import BatchOptions, run_batch
from sdcli.job.write import OutputOptions
from sdcli.models.loader import load_model
from sdcli.models.resolve import ModelRef
from sdcli.models.runtime import RuntimeOptions, plan_runtime
from sdcli.request.generation import GenerationRequest

model, prompts, out, steps, groups, repeat, warm = sys.argv[1:8]
folder, groups = Path(model), [int(g) for g in groups.split(",")]
loaded = load_model(ModelRef(folder, folder.name), plan_runtime(RuntimeOptions(), cuda=False, mps=False,
                                                                 xformers=False))

class Quiet:
    def note(self, message): pass
    def start(self, total, steps, completed=0): pass
    def step(self, step, total): pass
    def item(self, record): pass

def once(group, name, file=prompts):
    options = BatchOptions(Path(file), defaults=GenerationRequest(prompt="", steps=int(steps)), seed=0,
                           model=model, group=group, output=OutputOptions(Path(out) / name))
    cpu, wall = time.process_time(), time.perf_counter()
    stats = run_batch(options, Quiet(), load=lambda ref, plan: loaded)
    return (time.process_time() - cpu) / stats.done, (time.perf_counter() - wall) / stats.done

once(1, "warm-up", warm)  # one image at another size: first-call costs out of the measured runs
found = {g: {"cpu": [], "wall": []} for g in groups}
for r in range(int(repeat)):
    for g in (groups if r % 2 == 0 else groups[::-1]):
        cpu, wall = once(g, f"g{g}-r{r}")
        found[g]["cpu"].append(cpu)
        found[g]["wall"].append(wall)
print(json.dumps(found))
"""


def in_process(r: Any, work: Path, name: str, model: Path, size: int, groups: tuple[int, ...], repeat: int,
               steps: int, n: int) -> dict[str, Any]:
    """One model in one process (IN_PROCESS): seconds per image of each --group size over `n` lines."""
    prompts = work / f"grouping-{name}-in-process.txt"
    prompts.write_text("".join(f"--prompt '{PROMPTS[i % len(PROMPTS)]} {i}' --width {size} --height {size}\n"
                               for i in range(n)))
    warm = work / f"grouping-{name}-warm-up.txt"
    warm.write_text(f"--prompt 'warm-up' --width {size // 2} --height {size // 2}\n")
    out = work / "grouping" / f"{name}-in-process"
    shutil.rmtree(out, ignore_errors=True)
    _, stdout = r.run([sys.executable, "-c", IN_PROCESS, str(model), str(prompts), str(out), str(steps),
                       ",".join(map(str, groups)), str(repeat), str(warm)])
    found = {f"--group {g}": v for g, v in json.loads(stdout).items()}
    one = f"--group {groups[0]}"
    return {"images": n, "steps": steps, "size": size, "process": "one, the model loaded once",
            "seconds_per_image": {k: summary(v["wall"]) for k, v in found.items()},
            "cpu_seconds_per_image": {k: summary(v["cpu"]) for k, v in found.items()},
            **{f"{k} vs {one}": {"wall": compare(found[k]["wall"], found[one]["wall"]),
                                 "cpu": compare(found[k]["cpu"], found[one]["cpu"])} for k in found if k != one}}
