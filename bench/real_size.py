"""`make bench` row `tiny-real-size` (issue 21 point 4): one 1024 px, 30-step image from every tiny family.

Users' CI runs their real workflows on sdcli's tiny models; this row measures that: a whole `sdcli txt2img`
process (start, load, 30 steps with the family's own sampler and CFG, VAE decode, PNG) per tiny architecture,
repeated in rounds that visit every architecture in turn (alternating order), so a shared machine's drift
does not fall on one family. Reported per architecture: wall seconds (min/median/max), the spread (half the
range), the process's CPU seconds (user + system, less moved by other processes' load) and the 1-minute load
average seen before each run; `target_verdict` is "met" when median + spread <= 15 s, "not met" when
median - spread > 15 s, else "inconclusive".
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_S = 15.0
SIZE, STEPS = 1024, 30
# Every tiny architecture that makes an image from a prompt alone; the refiner runs img2img at full strength
# (30 steps) on an image of that size. The other arches (inpainting, Fill, Control, edit) are these widths
# with more input channels.
ARCHES = ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux-dev", "flux-schnell", "flux-kontext", "chroma",
          "zimage", "qwen-image", "flux2-klein", "flux2-klein-base")
IMG2IMG = {"sdxl-refiner"}


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def tiny_real_size(run: Callable[[list[str]], tuple[float, float]], work: Path, repeat: int,
                   arches: tuple[str, ...] = ARCHES) -> dict[str, Any]:
    """Seconds per 1024 px, 30-step image for every tiny arch. `run(cmd)` -> (wall s, CPU s) of a fresh process."""
    from PIL import Image

    from sdcli.models.tiny import build_tiny

    models = work / "real-size-models"
    for arch in arches:
        if not (models / arch / "model_index.json").exists():
            build_tiny(models / arch, arch=arch)
    source = work / "real-size-inputs" / "in.png"
    source.parent.mkdir(parents=True, exist_ok=True)
    Image.linear_gradient("L").resize((SIZE, SIZE)).convert("RGB").save(source)

    def command(arch: str, out: Path) -> list[str]:
        mode = ["img2img", "-i", str(source), "--strength", "1"] if arch in IMG2IMG else ["txt2img"]
        return [sys.executable, "-m", "sdcli", *mode, "a lighthouse at dusk", "-m", str(models / arch), "--steps",
                str(STEPS), "-W", str(SIZE), "-H", str(SIZE), "--seed", "1", "-o", str(out)]

    wall: dict[str, list[float]] = {a: [] for a in arches}
    cpu: dict[str, list[float]] = {a: [] for a in arches}
    load: dict[str, list[float]] = {a: [] for a in arches}
    for r in range(repeat):
        for arch in (arches if r % 2 == 0 else arches[::-1]):
            load[arch].append(round(load_average(), 2))
            seconds, cpu_s = run(command(arch, work / "real-size" / arch / str(r)))
            wall[arch].append(seconds)
            cpu[arch].append(cpu_s)
    rows = {arch: _row(wall[arch], cpu[arch], load[arch]) for arch in arches}
    return {"size": SIZE, "steps": STEPS, "repeat": repeat, "target_s": TARGET_S,
            "note": "whole process per image (start, load, sampling, decode, PNG); family defaults for sampler "
                    "and CFG; sdxl-refiner: img2img at strength 1", **rows}


def _row(wall: list[float], cpu: list[float], load: list[float]) -> dict[str, Any]:
    median = statistics.median(wall)
    spread = (max(wall) - min(wall)) / 2
    verdict = "met" if median + spread <= TARGET_S else "not met" if median - spread > TARGET_S else "inconclusive"
    return {"n": len(wall), "min": round(min(wall), 2), "median": round(median, 2), "max": round(max(wall), 2),
            "spread": round(spread, 2), "cpu_median": round(statistics.median(cpu), 2), "load_1min": load,
            "target_verdict": verdict}
