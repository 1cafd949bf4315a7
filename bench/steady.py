"""`make bench`'s steady section: per-image time inside one process, `sdcli batch` vs a hand-written loop."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scripts import BATCH_CPU, LOOP, PROMPT
from stats import compare, interleave, summary


def _inputs(folder: Path, size: int) -> tuple[Path, Path]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(200, 60, 40))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 3, size // 3, 2 * size // 3, 2 * size // 3))
    image.save(folder / "in.png")
    mask.save(folder / "mask.png")
    return folder / "in.png", folder / "mask.png"


def steady(r: Any, work: Path, models: dict[str, tuple[Path, int]], args: argparse.Namespace) -> dict[str, Any]:
    """Per-image time inside one process: `sdcli batch` vs a hand-written loop, per mode and model."""
    results: dict[str, Any] = {}
    for model_name, (model, size) in models.items():
        image, mask = _inputs(work / "inputs" / model_name, size)
        n = args.images if model_name == "tiny" else max(3, args.images // 2)
        steps = args.steps if model_name == "tiny" else args.full_steps
        modes = args.full_modes.split(",") if model_name != "tiny" else ("txt2img", "img2img", "inpaint")
        for mode, extra in (("txt2img", ""), ("img2img", f" --init_image {image} --denoising_strength {STRENGTH}"),
                            ("inpaint", f" --init_image {image} --mask {mask} --denoising_strength {STRENGTH} "
                                        "--inpainting_fill 1 --mask_blur 4")):
            if mode not in modes:
                continue
            prompts = work / f"{model_name}-{mode}.txt"
            prompts.write_text("".join(f"--prompt '{PROMPT} {i}' --width {size} --height {size}{extra}\n"
                                       for i in range(n)))
            cpu: dict[str, list[float]] = {"sdcli batch": [], "hand-written loop": []}
            batch, loop = _steady_paths(r, work / "steady" / f"{model_name}-{mode}", prompts, mode, model, n,
                                        steps, size, image, mask, cpu)
            times = interleave({"sdcli batch": batch, "hand-written loop": loop}, args.repeat, warmup=0)
            results[f"{model_name} {mode}"] = {
                "images_per_run": n, "steps": steps, "size": size, **{k: summary(v) for k, v in times.items()},
                "batch vs loop": compare(times["sdcli batch"], times["hand-written loop"], target=1.05),
                "cpu": {**{k: summary(v) for k, v in cpu.items()},
                        "batch vs loop": compare(cpu["sdcli batch"], cpu["hand-written loop"], target=1.05)}}
    return results


STRENGTH = 0.75  # the img2img and inpaint rows' denoising strength


def same_work_steps(steps: int, strength: float) -> int:
    """The num_inference_steps that makes diffusers' img2img pipeline run as many UNet steps as the WebUI's
    img2img (and sdcli's) does for `steps` at `strength`: the WebUI runs int(strength x steps) + 1 (its sigma
    table from steps - t_enc - 1), diffusers int(n x strength). Both sides then do the same work."""
    target = int(min(strength, 0.999) * steps) + 1
    n = target
    while int(n * strength) < target:
        n += 1
    return n


def _steady_paths(r: Any, out: Path, prompts: Path, mode: str, model: Path, n: int, steps: int, size: int,
                  image: Path, mask: Path, cpu: dict[str, list[float]]) -> tuple[Any, Any]:
    """The two measured paths of one steady comparison; each returns its median per-image seconds
    without the first image (warm-up inside the process), and appends the same median of the images'
    CPU seconds (the process's own) to `cpu`."""
    counter = iter(range(10**6))

    def middle(seconds: list[float]) -> float:
        rest = sorted(seconds[1:])
        return rest[len(rest) // 2]

    def batch() -> float:
        folder = out / f"batch{next(counter)}"
        cpu_file = out / "batch-cpu.json"
        r.env["SDCLI_BENCH_CPU"] = str(cpu_file)
        r.run([sys.executable, "-c", BATCH_CPU, "batch", str(prompts), "-m", str(model), "--steps", str(steps),
               "--seed", "0", "--group", "1", "-o", str(folder)])  # one call per line, as the loop
        cpu["sdcli batch"].append(middle(json.loads(cpu_file.read_text())))
        records = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
        return middle([x["seconds"] for x in records if x.get("type") == "item"])

    loop_steps = steps if mode == "txt2img" else same_work_steps(steps, STRENGTH)

    def loop() -> float:
        folder = out / f"loop{next(counter)}"
        folder.mkdir(parents=True)
        _, stdout = r.run([sys.executable, "-c", LOOP, mode, str(model), str(n), str(folder), str(loop_steps),
                           str(size), str(image), str(mask), PROMPT])
        measured = json.loads(stdout)
        cpu["hand-written loop"].append(middle(measured["cpu"]))
        return middle(measured["times"])

    return batch, loop
