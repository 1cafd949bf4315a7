"""`make bench`'s steady section: per-image time inside one process, `sdcli batch` vs a hand-written loop."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scripts import PAIRED, PROMPT
from stats import compare, summary


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
    """Per-image time of `sdcli batch` vs a hand-written loop, paired image by image inside one process.

    One process loads both (sdcli's batch and the loop's own diffusers pipeline from the same folder) and
    runs them in turn: each prompt-file line of `sdcli batch` (everything it does for the line: the whole
    call, PNG, infotext and manifest record) is followed or preceded (alternately) by one image of the loop
    (pipeline call and PNG save). Both halves of a pair share the process and the moment, so the VM's speed,
    which moves by 20-40% between processes and over minutes here, cancels in the pair's ratio. The first
    pair (warm-up) is dropped. On the tiny model (0.15 s images) consecutive pairs are compared in blocks of
    `--block` (each block: the sum of its sdcli lines against the sum of its loop images, the order within
    it balanced), which averages out the machine's jitter within a second; a full-size image is 20 s."""
    results: dict[str, Any] = {}
    for model_name, (model, size) in models.items():
        image, mask = _inputs(work / "inputs" / model_name, size)
        n = 1 + (args.images if model_name == "tiny" else max(5, args.images // 8))
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
            out = work / "steady" / f"{model_name}-{mode}"
            (out / "loop").mkdir(parents=True)
            config = {"mode": mode, "model": str(model), "size": size, "image": str(image), "mask": str(mask),
                      "loop_steps": steps if mode == "txt2img" else same_work_steps(steps, STRENGTH),
                      "prompt": PROMPT, "strength": STRENGTH, "out": str(out / "loop"),
                      "argv": ["batch", str(prompts), "-m", str(model), "--steps", str(steps), "--seed", "0",
                               "--group", "1", "-o", str(out / "batch")]}  # one call per line, as the loop
            r.env["SDCLI_BENCH_PAIRED"] = json.dumps(config)
            measured = json.loads(r.run([sys.executable, "-c", PAIRED])[1].splitlines()[-1])
            block = args.block if model_name == "tiny" else 1
            row: dict[str, Any] = {"pairs": n - 1, "block": block, "steps": steps, "size": size}
            for unit, suffix in (("wall", ""), ("cpu", "_cpu")):
                a, b = measured["sdcli" + suffix][1:], measured["loop" + suffix][1:]
                part = {"sdcli batch": summary(a), "hand-written loop": summary(b),
                        "batch vs loop": compare(*blocks(a, b, block), target=1.05)}
                row.update(part) if unit == "wall" else row.update(cpu=part)
            results[f"{model_name} {mode}"] = row
    return results


def blocks(a: list[float], b: list[float], size: int) -> tuple[list[float], list[float]]:
    """Consecutive pairs summed in blocks of `size` (a last, shorter block dropped)."""
    whole = len(a) // size * size
    return ([sum(a[i:i + size]) for i in range(0, whole, size)],
            [sum(b[i:i + size]) for i in range(0, whole, size)])


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
