"""Runtime options (device, precision, memory) and the plan they resolve to.

`plan_runtime` is pure so the GPU decisions are tested on a CPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdcli.errors import UsageError


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run: device, precision and memory options (all 'auto'-able)."""

    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: str = "auto"
    xformers: bool = False
    offline: bool = False


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp16", "bf16", "fp32")
SWITCHES = ("auto", "on", "off")

def validate_runtime(options: RuntimeOptions) -> None:
    """Check the device/precision flags (their availability is checked by the loader)."""
    for flag, value, allowed in (
        ("--device", options.device, DEVICES),
        ("--dtype", options.dtype, DTYPES),
        ("--attention-slicing", options.attention_slicing, SWITCHES),
    ):
        if value not in allowed:
            raise UsageError(f"{flag}: unknown value {value!r}; choose from {', '.join(allowed)}")


@dataclass(frozen=True)
class RuntimePlan:
    """Concrete device, dtype and memory choices."""

    device: str
    dtype: str
    attention_slicing: bool
    attention: str  # "sdpa" or "xformers"


def plan_runtime(options: RuntimeOptions, *, cuda: bool, mps: bool, xformers: bool) -> RuntimePlan:
    """Resolve 'auto' choices: fp16 + attention slicing on CUDA, fp32 elsewhere; SDPA unless --xformers."""
    device = options.device
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    elif device == "cuda" and not cuda:
        raise UsageError("--device: cuda was asked for but torch sees no CUDA GPU")
    elif device == "mps" and not mps:
        raise UsageError("--device: mps was asked for but it is not available here")
    dtype = options.dtype
    if dtype == "auto":
        dtype = "fp16" if device == "cuda" else "fp32"
    elif dtype == "fp16" and device == "cpu":
        raise UsageError("--dtype: fp16 is not supported on CPU; use fp32 or bf16")
    slicing = {"on": True, "off": False}.get(options.attention_slicing, device == "cuda")
    if options.xformers and not xformers:
        raise UsageError("--xformers: xformers is not installed (pip install 'sdcli[xformers]')")
    if options.xformers and device != "cuda":
        raise UsageError(f"--xformers: xformers needs --device cuda, not {device}")
    return RuntimePlan(device, dtype, slicing, "xformers" if options.xformers else "sdpa")


def detect_runtime(options: RuntimeOptions) -> RuntimePlan:
    """plan_runtime() with what this machine has."""
    import importlib.util

    import torch

    return plan_runtime(
        options,
        cuda=torch.cuda.is_available(),
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        xformers=importlib.util.find_spec("xformers") is not None,
    )


TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
