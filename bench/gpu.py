"""GPU benchmark for docs/benchmarks.md: full-size random-weight SD1.5 and SDXL architectures on CUDA.

Measures, per configuration: it/s of the denoising loop, seconds per image (whole
pipeline call: encode + denoise + VAE decode), peak VRAM, the fraction of the GPU's
dense fp16 FLOP bound the UNet reaches, and whether fp16 produced NaN/black images.

  python bench/gpu.py                       # everything, JSON to bench-out/gpu.json, a table on stdout
  python bench/gpu.py --only sd15 --steps 30 --attention sdpa,compile
  python bench/gpu.py --peak-tflops 989     # when the GPU is not in PEAK_TFLOPS

Weights are random (speed does not depend on their values) and built in GPU memory;
nothing is downloaded. The runtime options are applied by sdcli's own models.runtime
planner and apply_plan; images come from the diffusers pipeline call sdcli's core makes
(one CPU generator per image), and the same job through sdcli's own loop (`--path sdcli`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import SD15_TEXT, SD15_UNET, SD15_VAE  # noqa: E402

# UNet forward cost (TFLOP) at the native latent, from the issue: SD1.5 64x64, SDXL 128x128.
UNET_TFLOP = {"sd15": 0.80, "sdxl": 6.8}
# Dense fp16/bf16 tensor-core peak (TFLOP/s, no sparsity), by a substring of the device name.
PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
               "H200": 989.4, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.2}
SDXL_UNET = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280), "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048, "use_linear_projection": True,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32,
}
SDXL_TEXT_2 = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
               "max_position_embeddings": 77, "projection_dim": 1280, "hidden_act": "gelu"}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "steps_offset": 1, "timestep_spacing": "leading"}


def _tokenizer(tmp: Path) -> tuple[Any, int]:
    from transformers import CLIPTokenizer

    from sdcli.models.bundled import write_clip_tokenizer

    write_clip_tokenizer(tmp)  # the real CLIP vocabulary (49408 tokens), from the bundled BPE
    vocab = 49408
    return CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"), pad_token="<|endoftext|>",
                         model_max_length=77), vocab


def build(arch: str, tmp: Path) -> Any:
    """A full-size random-weight model of `arch` (models.loaded.LoadedModel), fp16, on CUDA."""
    from sdcli.models.loaded import LoadedModel

    pipe = _pipeline(arch, tmp)
    return LoadedModel.of(pipe, "sd1" if arch == "sd15" else "sdxl")


def _pipeline(arch: str, tmp: Path) -> Any:
    """A full-size random-weight pipeline of `arch`, fp16, on CUDA."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, vocab = _tokenizer(tmp)
    ids = {"vocab_size": vocab, "pad_token_id": vocab - 1, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}
    torch.manual_seed(0)
    scheduler = diffusers.EulerDiscreteScheduler(**SCHEDULER)  # its tables stay on the CPU, as loaded ones do
    with torch.device("cuda"):
        if arch == "sd15":
            return diffusers.StableDiffusionPipeline(
                vae=diffusers.AutoencoderKL(**SD15_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT, **ids)),
                tokenizer=tokenizer, unet=diffusers.UNet2DConditionModel(**SD15_UNET), scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False).to(torch.float16)
        vae = diffusers.AutoencoderKL(**{**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025,
                                         "force_upcast": True})
        return diffusers.StableDiffusionXLPipeline(
            vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT, **ids)),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TEXT_2, **ids)),
            tokenizer=tokenizer, tokenizer_2=tokenizer, unet=diffusers.UNet2DConditionModel(**SDXL_UNET),
            scheduler=scheduler).to(torch.float16)


def configure(pipe: Any, attention: str) -> Any:
    """Apply one attention configuration with sdcli's runtime planner and apply_plan."""
    import importlib.util

    from sdcli.models.runtime import RuntimeOptions, apply_plan, plan_runtime

    options = {"sdpa": RuntimeOptions(attention_slicing="off"),
               "xformers": RuntimeOptions(xformers=True),
               "slicing": RuntimeOptions(attention_slicing="on"),
               "compile": RuntimeOptions(attention_slicing="off", compile=True, channels_last=True),
               "auto": RuntimeOptions()}[attention]
    plan = plan_runtime(options, cuda=True, mps=False, xformers=importlib.util.find_spec("xformers") is not None)
    from diffusers.models.attention_processor import AttnProcessor2_0

    # Each configuration starts from the processors a loaded model has: SDPA (AttnProcessor2_0).
    # (set_default_attn_processor would install the classic baddbmm+softmax one instead.)
    pipe.pipe.unet.set_attn_processor(AttnProcessor2_0())
    apply_plan(pipe, replace(plan, vae_tiling=False))
    return plan


def measure(pipe: Any, arch: str, batch: int, steps: int, size: int, runs: int, warmup: int) -> dict[str, Any]:
    """Time `runs` pipeline calls after `warmup` ones; it/s from the denoising steps' timestamps."""
    import torch

    stamps: list[float] = []

    def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return kwargs

    def call() -> tuple[float, float, Any]:
        stamps.clear()
        generators = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = pipe.pipe(["a lighthouse at dusk, oil painting"] * batch, num_inference_steps=steps, width=size,
                   height=size, guidance_scale=7.0, generator=generators, output_type="np",
                   callback_on_step_end=on_step)
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        loop = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
        return total, loop, list(out.images)

    return _summary(call, arch, batch, runs, warmup)


def _summary(call: Any, arch: str, batch: int, runs: int, warmup: int) -> dict[str, Any]:
    """Run `call` (-> seconds, seconds per step, images) warmup + runs times; the row's numbers."""
    import numpy as np
    import torch

    for _ in range(warmup):
        call()
    torch.cuda.reset_peak_memory_stats()
    totals, loops, images = [], [], []
    for _ in range(runs):
        total, loop, images = call()
        totals.append(total)
        loops.append(loop)
    it_s = 1 / statistics.median(loops)
    return {"it_per_s": round(it_s, 2), "s_per_image": round(statistics.median(totals) / batch, 4),
            "s_per_call_min": round(min(totals), 4),
            "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "unet_tflops_achieved": round(it_s * 2 * UNET_TFLOP[arch] * batch, 1),  # 2 UNet rows per CFG step
            "nan_or_black": any(bool(np.isnan(i).any()) or float(np.nanmax(i)) == 0.0 for i in images)}


def measure_sdcli(pipe: Any, arch: str, batch: int, steps: int, size: int, runs: int,
                  warmup: int) -> dict[str, Any]:
    """The same job through sdcli's own path (core.generate.run: the WebUI-exact loop, Euler, CFG 7)."""
    import numpy as np
    import torch

    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, validate

    stamps: list[float] = []

    def on_step(_done: int, _total: int) -> None:
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    request = GenerationRequest(prompt="a lighthouse at dusk, oil painting", steps=steps, seed=0, width=size,
                                height=size, batch_size=batch, cfg_scale=7.0, sampler="Euler")
    choice = validate(request)

    def call() -> tuple[float, float, Any]:
        stamps.clear()
        torch.cuda.synchronize()
        start = time.perf_counter()
        items = list(run(request, pipe, choice, model_name="bench", model_hash="0" * 10, on_step=on_step))
        images = [np.zeros((1,)) if item.failure else np.asarray(item.image, dtype=np.float32) / 255
                  for item in items]  # a NaN decode is refused by sdcli: counted as black
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        loop = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
        return total, loop, images

    return _summary(call, arch, batch, runs, warmup)


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sd15,sdxl")
    parser.add_argument("--attention", default="auto,sdpa,xformers,slicing,compile")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--path", default="pipeline,sdcli",
                        help="pipeline: diffusers' pipeline call; sdcli: sdcli's own loop (core.generate.run)")
    parser.add_argument("--jobs", default="sd15:1:512,sd15:4:512,sdxl:1:1024", help="arch:batch:size,...")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-out") / "gpu.json")
    args = parser.parse_args()

    import importlib.util
    import tempfile

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA GPU here; the GPU rows of docs/benchmarks.md stay 'not yet measured'")
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name, args.peak_tflops)
    jobs = [(a, int(b), int(z)) for a, b, z in (j.split(":") for j in args.jobs.split(","))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in [a for a in args.only.split(",") if a]:
            for attention in args.attention.split(","):
                if attention == "xformers" and importlib.util.find_spec("xformers") is None:
                    rows.append({"arch": arch, "attention": attention, "skipped": "xformers is not installed"})
                    continue
                pipe = build(arch, Path(tmp) / f"{arch}-{attention}")
                try:
                    plan = configure(pipe, attention)
                except Exception as exc:  # noqa: BLE001 - e.g. xformers installed without kernels for this torch
                    rows.append({"arch": arch, "attention": attention, "skipped": str(exc).splitlines()[0]})
                    print(json.dumps(rows[-1]), flush=True)
                    del pipe
                    continue
                for job_arch, batch, size in jobs:
                    if job_arch != arch:
                        continue
                    warmup = 2 if attention == "compile" else 1
                    for path in args.path.split(","):
                        how = measure if path == "pipeline" else measure_sdcli
                        row = {"arch": arch, "attention": attention, "path": path, "batch": batch, "size": size,
                               "steps": args.steps, "slicing": bool(pipe.runtime.attention_slicing),
                               "dtype": plan.dtype, **how(pipe, arch, batch, args.steps, size, args.runs, warmup)}
                        row["flop_bound_fraction"] = (round(row["unet_tflops_achieved"] / peak, 3) if peak
                                                      else None)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                del pipe
                torch.cuda.empty_cache()
    result = {"gpu": name, "peak_fp16_tflops": peak, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{name} (peak {peak} TFLOP/s fp16 dense)\n")
    print("| arch | attention | path | batch | size | it/s | s/image | peak VRAM GiB | FLOP-bound | NaN/black |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['arch']} | {r['attention']} | - | - | - | skipped: {r['skipped']} | | | | |")
        else:
            print(f"| {r['arch']} | {r['attention']} | {r['path']} | {r['batch']} | {r['size']} | {r['it_per_s']} | "
                  f"{r['s_per_image']} | {r['peak_vram_gib']} | {r['flop_bound_fraction']} | {r['nan_or_black']} |")


if __name__ == "__main__":
    main()
