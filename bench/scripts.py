"""The hand-written diffusers code sdcli is measured against, and the bench's inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

PROMPT = "a lighthouse at dusk, oil painting"  # every measured image's prompt (with its number)

# The minimal script a diffusers user writes for one image (same scheduler as sdcli's default).
MINIMAL = r"""
import sys
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
model, prompt, steps, size, out = sys.argv[1:6]
pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
image = pipe(prompt, num_inference_steps=int(steps), width=int(size), height=int(size),
             generator=torch.Generator("cpu").manual_seed(1)).images[0]
image.save(out)
"""

# `sdcli batch` paired image by image with a hand-written diffusers loop in one process (bench/steady.py):
# each prompt-file line's call (batch.runner._run_unit) and one loop image run in turn, the order alternating;
# prints each half's wall and CPU seconds. Settings in $SDCLI_BENCH_PAIRED (JSON).
PAIRED = r"""
import json, os, sys, time
import torch
from PIL import Image
import diffusers
import sdcli.batch.runner as runner
from sdcli.cli import main
cfg = json.loads(os.environ["SDCLI_BENCH_PAIRED"])
mode, size = cfg["mode"], cfg["size"]
cls = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
       "inpaint": "StableDiffusionInpaintPipeline"}[mode]
pipe = getattr(diffusers, cls).from_pretrained(cfg["model"], safety_checker=None, requires_safety_checker=False,
                                               use_safetensors=True, local_files_only=True)
pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
pipe.set_progress_bar_config(disable=True)
extra = {"width": size, "height": size}
if mode != "txt2img":
    extra = {"image": Image.open(cfg["image"]).convert("RGB"), "strength": cfg["strength"]}
if mode == "inpaint":
    extra.update(mask_image=Image.open(cfg["mask"]).convert("L"), width=size, height=size)

def loop_image(i):
    image = pipe(f"{cfg['prompt']} {i}", num_inference_steps=cfg["loop_steps"], guidance_scale=7.0,
                 generator=torch.Generator("cpu").manual_seed(i), **extra).images[0]
    image.save(f"{cfg['out']}/{i:05d}.png")

run_unit, measured = runner._run_unit, {"sdcli": [], "loop": [], "sdcli_cpu": [], "loop_cpu": []}

def paired(*args, **kwargs):
    i = len(measured["sdcli"])
    halves = [("sdcli", lambda: run_unit(*args, **kwargs)), ("loop", lambda: loop_image(i))]
    for name, run in (halves if i % 2 == 0 else halves[::-1]):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        measured[name].append(time.perf_counter() - start)
        measured[name + "_cpu"].append(time.process_time() - start_cpu)

runner._run_unit = paired
sys.argv = ["sdcli", *cfg["argv"]]
try:
    main()
finally:
    print(json.dumps(measured))
"""

# `sdcli batch` itself, with the CPU seconds (this process's) of each prompt-file line written to $SDCLI_BENCH_CPU:
# on a shared machine the CPU time of the work moves far less with other processes' load than its wall time.
BATCH_CPU = r"""
import json, os, sys, time
import sdcli.batch.runner as runner
from sdcli.cli import main
run_unit, cpu = runner._run_unit, []
def timed(*args, **kwargs):
    start = time.process_time()
    try:
        return run_unit(*args, **kwargs)
    finally:
        cpu.append(time.process_time() - start)
runner._run_unit = timed
sys.argv = ["sdcli", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["SDCLI_BENCH_CPU"], "w") as f:
        json.dump(cpu, f)
"""

# Stable Diffusion 1.5's architecture at full size (UNet ~860M, VAE ~84M, CLIP ViT-L text ~123M
# parameters), random weights: speed and memory do not depend on the weights' values.
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32,
}
SD15_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "norm_num_groups": 32, "sample_size": 512,
}
SD15_TEXT = {
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
    "max_position_embeddings": 77, "projection_dim": 768, "hidden_act": "quick_gelu",
}


def build_full_sd15(folder: Path) -> Path:
    """A full-size SD1.5-architecture random-weight checkpoint, built once with sdcli's own builder."""
    from sdcli.models import tiny

    if (folder / "model_index.json").exists():
        return folder
    tiny.ARCHES["bench-sd15-full"] = replace(tiny.ARCHES["sd1"], unet=SD15_UNET, vae=SD15_VAE,
                                             text_encoder=SD15_TEXT)
    return tiny.build_tiny(folder, arch="bench-sd15-full")


def write_grid_inputs(folder: Path, count: int, size: int) -> Path:
    """`count` distinct size x size PNGs and a done-items manifest naming them."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.jsonl"
    base = Image.linear_gradient("L").resize((size, size))
    lines = [json.dumps({"type": "batch", "version": "bench", "items": count, "digest": "bench", "base_seed": 0})]
    for i in range(count):
        path = folder / f"{i:05d}.png"
        if not path.exists():
            image = Image.merge("RGB", (base, base.rotate(90 * (i % 4)), Image.new("L", (size, size), i % 256)))
            ImageDraw.Draw(image).text((10, 10), f"image {i}", fill=(255, 255, 255))
            image.save(path, compress_level=1)
        lines.append(json.dumps({"type": "item", "item": i, "status": "done", "path": str(path),
                                 "prompt": f"bench image {i}", "seed": i}))
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
