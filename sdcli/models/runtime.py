"""Runtime options (device, precision, attention, memory, speed-ups) and the plan they resolve to.

`plan_runtime` and `fit_memory` are pure so every GPU decision is tested on a CPU
machine; models.placement.apply_plan carries a plan out on a loaded model.

The memory rule (`fit_memory`, README "Runtime flags"): attention slicing and VAE
tiling are used only where the job would not fit otherwise.
- Attention slicing, auto: off wherever attention runs on a memory-efficient kernel
  (PyTorch SDPA on CUDA and CPU, xformers): those never hold the full score matrix, so
  slicing (which swaps in a processor that does) is slower and saves nothing. On MPS,
  whose attention holds the scores, on when one image pair's score matrices
  (2 x heads x L^2 values, L = latent pixels) would take more than half the free memory.
- VAE tiling, auto: on when decoding one image (the VAE decodes one image at a time,
  always) is estimated to need more than 80% of the memory free once the weights are
  loaded (estimate: 128 channels x 12 live tensors per output pixel, fp32 values when
  the VAE upcasts, as SDXL's does).
- Free memory: CUDA's free device memory, MPS's recommended working set less what
  it holds, CPU's MemAvailable; unknown free memory decides "off".
"""

from __future__ import annotations

from dataclasses import dataclass

from sdcli.errors import UsageError


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run: device, precision, attention, memory and compilation (see README "Runtime flags")."""

    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: str = "auto"
    xformers: bool = False
    offline: bool = False
    vae_tiling: str = "auto"
    cpu_offload: str = "none"
    compile: bool = False
    channels_last: bool = False
    tf32: bool = False
    fuse_qkv: bool = False


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp16", "bf16", "fp32")
SWITCHES = ("auto", "on", "off")
OFFLOADS = ("auto", "none", "model", "sequential")


def validate_runtime(options: RuntimeOptions) -> None:
    """Check the flags' values (what this machine can do is checked by plan_runtime)."""
    for flag, value, allowed in (
        ("--device", options.device, DEVICES),
        ("--dtype", options.dtype, DTYPES),
        ("--attention-slicing", options.attention_slicing, SWITCHES),
        ("--vae-tiling", options.vae_tiling, SWITCHES),
        ("--cpu-offload", options.cpu_offload, OFFLOADS),
    ):
        if value not in allowed:
            raise UsageError(f"{flag}: unknown value {value!r}; choose from {', '.join(allowed)}")
    _check_combinations(options)


def _check_combinations(options: RuntimeOptions) -> None:
    """Options that would silently undo each other are refused instead."""
    if options.xformers and options.attention_slicing == "on":
        raise UsageError("--attention-slicing on: both it and --xformers replace the attention processor, and "
                         "the last one set would silently win; choose one")
    if options.fuse_qkv and (options.xformers or options.attention_slicing == "on"):
        other = "--xformers" if options.xformers else "--attention-slicing on"
        raise UsageError(f"--fuse-qkv: it installs its own fused SDPA attention processor, which {other} "
                         "would replace; choose one")
    if options.compile and options.cpu_offload == "sequential":  # ("auto" never picks sequential with --compile)
        raise UsageError("--compile: sequential CPU offload moves every layer's weights in and out per call, "
                         "which torch.compile cannot trace; use --cpu-offload model or drop --compile")


@dataclass(frozen=True)
class JobSize:
    """The largest image a plan must fit: width/height None = the model's native size."""

    width: int | None = None
    height: int | None = None
    batch: int = 1


@dataclass(frozen=True)
class RuntimePlan:
    """Concrete device, dtype, attention and speed-ups; `attention_slicing`/`vae_tiling` may
    stay "auto" until fit_memory() sees the loaded weights and the free memory."""

    device: str
    dtype: str
    attention_slicing: bool | str
    attention: str  # "sdpa" or "xformers"
    vae_tiling: bool | str = False
    cpu_offload: str = "none"
    compile: bool = False
    channels_last: bool = False
    tf32: bool = False
    fuse_qkv: bool = False
    job: JobSize = JobSize()


GPU_ONLY = {  # option -> why it is refused off CUDA
    "compile": ("--compile", "torch.compile is offered for CUDA only: on {device} it compiles for minutes and "
                             "runs no faster"),
    "tf32": ("--tf32", "TF32 is a matmul mode of NVIDIA (Ampere or newer) GPUs; {device} has none"),
}


def plan_runtime(options: RuntimeOptions, *, cuda: bool, mps: bool, xformers: bool,
                 job: JobSize | None = None, gpu_dtype: str = "fp16") -> RuntimePlan:
    """Resolve 'auto' choices for this machine: `gpu_dtype` (the model family's: fp16, Flux bf16) + SDPA on
    CUDA, fp32 elsewhere.

    Attention slicing and VAE tiling stay "auto" on every device until fit_memory()
    decides them from the free memory (off on CPU and on CUDA with SDPA in practice).
    Raises UsageError naming the flag for what this machine cannot do.
    """
    validate_runtime(options)
    device = options.device
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    elif device == "cuda" and not cuda:
        raise UsageError("--device: cuda was asked for but torch sees no CUDA GPU")
    elif device == "mps" and not mps:
        raise UsageError("--device: mps was asked for but it is not available here")
    dtype = options.dtype
    if dtype == "auto":
        dtype = gpu_dtype if device == "cuda" else "fp32"
    elif dtype == "fp16" and device == "cpu":
        raise UsageError("--dtype: fp16 is not supported on CPU; use fp32 or bf16")
    if options.xformers and not xformers:
        raise UsageError("--xformers: xformers is not installed (pip install 'sdcli[xformers]')")
    if options.xformers and device != "cuda":
        raise UsageError(f"--xformers: xformers needs --device cuda, not {device}")
    if options.cpu_offload not in ("none", "auto") and device != "cuda":
        raise UsageError(f"--cpu-offload: it moves weights between a CUDA GPU and CPU memory; on {device} "
                         "everything already lives in one memory")
    for name, (flag, why) in GPU_ONLY.items():
        if getattr(options, name) and device != "cuda":
            raise UsageError(f"{flag}: {why.format(device=device)}")
    switch = {"on": True, "off": False}
    return RuntimePlan(
        device=device, dtype=dtype,
        attention_slicing=switch.get(options.attention_slicing, "auto"),
        attention="xformers" if options.xformers else "sdpa",
        vae_tiling=switch.get(options.vae_tiling, "auto"),
        cpu_offload=options.cpu_offload if device == "cuda" else "none", compile=options.compile,
        channels_last=options.channels_last,
        tf32=options.tf32, fuse_qkv=options.fuse_qkv, job=job or JobSize(),
    )


# Memory estimates behind fit_memory (conservative, per image; see the module docstring).
VAE_LIVE_VALUES_PER_PIXEL = 128 * 12
ATTENTION_HEADS = 8


def vae_decode_bytes(width: int, height: int, value_bytes: int) -> int:
    """Estimated peak working memory of decoding one width x height image."""
    return width * height * VAE_LIVE_VALUES_PER_PIXEL * value_bytes


def score_matrix_bytes(width: int, height: int, batch: int, value_bytes: int, scale: int = 8) -> int:
    """Memory of the full self-attention score matrices of one UNet call (CFG doubles the batch)."""
    latent = (width // scale) * (height // scale)
    return 2 * batch * ATTENTION_HEADS * latent * latent * value_bytes


@dataclass(frozen=True)
class Fit:
    """fit_memory's decisions and the reason for each 'auto' one."""

    attention_slicing: bool
    vae_tiling: bool
    reasons: tuple[str, ...] = ()


def fit_memory(plan: RuntimePlan, *, width: int, height: int, free_bytes: int | None,
               vae_upcast: bool = False) -> Fit:
    """Decide 'auto' attention slicing and VAE tiling for a width x height job (module docstring's rule).

    `vae_upcast`: the VAE decodes in fp32 whatever the dtype (SDXL's VAE config asks for it).
    """
    value_bytes = 4 if plan.dtype == "fp32" else 2
    reasons = []
    slicing = plan.attention_slicing
    if slicing == "auto":
        need = score_matrix_bytes(width, height, plan.job.batch, value_bytes)
        slicing = plan.device == "mps" and free_bytes is not None and need > free_bytes // 2
        if slicing:
            reasons.append(f"attention slicing on: score matrices ~{need >> 20} MiB > half of {free_bytes >> 20} "
                           "MiB free")
    tiling = plan.vae_tiling
    if tiling == "auto":
        need = vae_decode_bytes(width, height, 4 if vae_upcast else value_bytes)
        tiling = free_bytes is not None and need > free_bytes * 0.8
        if tiling:
            reasons.append(f"VAE tiling on: decoding ~{need >> 20} MiB > 80% of {free_bytes >> 20} MiB free")
    return Fit(bool(slicing), bool(tiling), tuple(reasons))


GIB = 1 << 30
RESIDENT_SHARE = 0.9  # of the free memory: what the weights and one step's working memory may take


def network_working_bytes(tokens: int, width: int, batch: int, value_bytes: int) -> int:
    """Working memory of one transformer call: ~16 live values per token and channel (one block's attention
    with SDPA, its 4x MLP, modulation), CFG's two rows per image."""
    return 2 * batch * tokens * width * 16 * value_bytes


def plan_offload(parts: dict[str, int], *, network: str, free_bytes: int | None, working: int,
                 compile: bool = False) -> tuple[str, str]:
    """--cpu-offload auto on CUDA: ("none" | "model" | "sequential", why) from the size of each part of the
    model (bytes at the compute dtype), the free VRAM and one step's working memory.

    All parts resident when everything fits in RESIDENT_SHARE of the free memory; else model offload
    (diffusers' enable_model_cpu_offload: one part on the GPU at a time, the text encoders run there in
    turn) when the largest part fits with the working memory; else sequential offload (layer by layer:
    least VRAM, slowest). Unknown free memory: resident.
    """
    total, budget = sum(parts.values()), (free_bytes or 0) * RESIDENT_SHARE
    if free_bytes is None or total + working <= budget:
        return "none", f"all weights resident ({total / GIB:.1f} GiB)"
    largest = max(parts, key=lambda k: parts[k])
    if parts[largest] + working <= budget or compile:
        return "model", (f"model offload: {total / GIB:.1f} GiB of weights > {budget / GIB:.1f} GiB usable; "
                         f"the largest part ({largest}, {parts[largest] / GIB:.1f} GiB) fits")
    return "sequential", (f"sequential offload: the {largest} alone ({parts[largest] / GIB:.1f} GiB) and a "
                          f"step's {working / GIB:.1f} GiB exceed {budget / GIB:.1f} GiB usable")


def detect_runtime(options: RuntimeOptions, job: JobSize | None = None, gpu_dtype: str = "fp16") -> RuntimePlan:
    """plan_runtime() with what this machine has."""
    import importlib.util

    import torch

    return plan_runtime(
        options,
        cuda=torch.cuda.is_available(),
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        xformers=importlib.util.find_spec("xformers") is not None,
        job=job, gpu_dtype=gpu_dtype,
    )


TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def free_memory(device: str) -> int | None:
    """Bytes free for working memory on `device` now, or None when unknown."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
