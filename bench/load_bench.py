"""`make bench` (second part): load time of a single-file checkpoint vs the same weights as a diffusers folder.

Builds, once, a FULL-SIZE SD 1.5-architecture model with random weights (fp16, ~2 GB per
copy) from sdcli's bundled configs: a diffusers folder and a WebUI single file holding the
same tensors. Then loads each `--repeat` times, interleaved (the order alternates per
round), every load in a fresh process timing only sdcli's load_model (imports excluded;
the OS page cache is warm for both after the first round). Reports median and spread, the
ratio of medians (target: single file <= 1.10x folder) and the model-hash times: first
hash of the file vs a repeat (cached: the file is not read again).
Writes bench-out/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

LOAD = r"""
import json, sys, time
from pathlib import Path
from sdcli.models.loader import load_model
from sdcli.models.resolve import resolve_model
from sdcli.models.runtime import RuntimeOptions, plan_runtime
ref = resolve_model(sys.argv[1])
plan = plan_runtime(RuntimeOptions(dtype=sys.argv[2]), cuda=False, mps=False, xformers=False)
# Imports are not loading: both paths' libraries are imported before the clock starts.
import diffusers.loaders.single_file_utils
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer
start = time.perf_counter()
pipe = load_model(ref, plan).pipe
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "params": sum(p.numel() for p in pipe.unet.parameters())}))
"""


def build(work: Path) -> tuple[Path, Path]:
    """The full-size random SD 1.5 model as a diffusers folder and as a single file (built once)."""
    folder, single = work / "sd15-random", work / "sd15-random.safetensors"
    if (folder / "model_index.json").exists() and single.exists():
        return folder, single
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from sdcli.models.bundled import family_config, write_config_folder
    from sdcli.models.original_keys import original_state_dict

    config = family_config("sd1")
    write_config_folder(config, work / "_configs")
    torch.manual_seed(0)
    text = {k: v for k, v in config["text_encoder"].items() if k not in ("architectures", "model_type")}
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(config["vae"]), text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
        tokenizer=CLIPTokenizer.from_pretrained(work / "_configs" / "tokenizer"),
        unet=UNet2DConditionModel.from_config(config["unet"]),
        scheduler=PNDMScheduler.from_config(config["scheduler"]), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    save_file(original_state_dict(pipe, "sd1"), str(single))
    return folder, single


def load_once(path: Path, dtype: str, env: dict[str, str]) -> float:
    proc = subprocess.run([sys.executable, "-c", LOAD, str(path), dtype], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"load bench: loading {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])["seconds"]


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="fp32", help="load dtype (CPU: fp32 or bf16)")
    parser.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "2"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder, single = build(work)
    build_s = time.perf_counter() - started
    cache = work / "load-cache"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "SDCLI_CACHE": str(cache),
           "HF_HOME": str(work / "empty-hf-home")}
    load_once(single, args.dtype, env)  # warm-up: page cache, bundled config folder written once
    load_once(folder, args.dtype, env)
    times: dict[str, list[float]] = {"folder": [], "single": []}
    for r in range(args.repeat):
        order = ("folder", "single") if r % 2 == 0 else ("single", "folder")
        for kind in order:
            times[kind].append(load_once(folder if kind == "folder" else single, args.dtype, env))

    # Model hash: first computation reads the whole file; the repeat must come from the cache.
    os.environ["SDCLI_CACHE"] = str(work / "hash-cache-fresh")
    from sdcli.models.hashes import model_hash

    shutil.rmtree(work / "hash-cache-fresh", ignore_errors=True)
    t0 = time.perf_counter()
    first = model_hash(single)
    t1 = time.perf_counter()
    again = model_hash(single)
    t2 = time.perf_counter()

    folder_s, single_s = summary(times["folder"]), summary(times["single"])
    ratio = single_s["median_s"] / folder_s["median_s"]
    result = {
        "settings": {"repeat": args.repeat, "dtype": args.dtype, "threads": args.threads,
                     "weights": "SD 1.5 architecture, random, fp16 on disk",
                     "file_bytes": single.stat().st_size,
                     "folder_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
                     "build_s": round(build_s, 1)},
        "folder": folder_s, "single_file": single_s,
        "ratio_single_vs_folder": round(ratio, 3),
        "target": "single-file load median <= 1.10x folder load median",
        "target_met": ratio <= 1.10,
        "hash": {"value": first, "first_s": round(t1 - t0, 3), "cached_s": round(t2 - t1, 4), "same": first == again},
    }
    (work / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
