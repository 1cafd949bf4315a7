"""Models and pipelines: resolve --model, check the files, pick device/dtype, load.

The only module that imports diffusers (inside functions). Planning functions
(`plan_runtime`) are pure so the GPU decisions are tested on a CPU machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.core.errors import ModelError, RuntimeFailure, UsageError
from sdcli.core.request import RuntimeOptions
from sdcli.core.samplers import SamplerChoice

DEMO_ARCH, DEMO_SEED = "sd1", 0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
# Files read by the model-hash rule for folders (see model_hash).
HASHED_SUFFIXES = (".safetensors", ".json", ".txt")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a local diffusers folder plus how to name it."""

    path: Path
    name: str
    is_demo: bool = False
    source: str | None = None  # what --model should say to load it again (None: the demo)


def cache_dir() -> Path:
    """sdcli's cache folder ($SDCLI_CACHE, else $XDG_CACHE_HOME/sdcli, else ~/.cache/sdcli)."""
    if env := os.environ.get("SDCLI_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sdcli"


def demo_model() -> ModelRef:
    """The embedded default: a tiny random-weight SD1 model, built once into the cache."""
    from sdcli.core.tiny import build_tiny

    path = cache_dir() / "models" / f"tiny-{DEMO_ARCH}-seed{DEMO_SEED}"
    if not (path / "model_index.json").exists():
        try:
            build_tiny(path, arch=DEMO_ARCH, seed=DEMO_SEED)
        except UsageError:
            if not (path / "model_index.json").exists():  # lost a race, or a broken leftover
                raise
    return ModelRef(path, f"sdcli-tiny-{DEMO_ARCH}-demo", is_demo=True)


def resolve_model(spec: str | None, offline: bool = False) -> ModelRef:
    """Turn --model (folder or hub id; None = demo) into a local folder.

    A local path never touches the network; a hub id uses the normal hub cache,
    and only the cache when --offline or HF_HUB_OFFLINE is set.
    """
    if not spec:
        return demo_model()
    local = Path(spec).expanduser()
    if local.exists():
        check_model_folder(local)
        return ModelRef(local.resolve(), local.resolve().name, source=str(local.resolve()))
    if not _HUB_ID.match(spec) or spec.startswith((".", "/", "~")):
        raise ModelError(f"--model: no such folder: {spec}")
    return ModelRef(_hub_snapshot(spec, offline), spec, source=spec)


def _hub_snapshot(repo_id: str, offline: bool) -> Path:
    """Download (or find in the hub cache) the files a diffusers pipeline needs."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        folder = snapshot_download(
            repo_id,
            local_files_only=offline,
            allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"],
        )
    except LocalEntryNotFoundError:
        raise ModelError(
            f"--model: {repo_id} is not in the local hub cache and offline mode is on "
            "(and there is no local folder of that name)"
        ) from None
    except Exception as exc:  # network, auth, missing repo: the hub's own message is the best one
        raise RuntimeFailure(f"--model: could not fetch {repo_id} from the hub: {exc}") from None
    path = Path(folder)
    check_model_folder(path)
    return path


def check_model_folder(folder: Path) -> None:
    """Refuse folders that are not diffusers models, hold only pickle weights, or hold corrupt files."""
    if not folder.is_dir():
        raise ModelError(f"--model: {folder} is a file; sdcli needs a diffusers model folder "
                         "(single-file checkpoints are not supported)")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(f"--model: {folder} is not a diffusers model folder (no model_index.json)")
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"--model: {index} is not valid JSON: {exc}") from None
    for name, value in components.items():
        sub = folder / name
        if not (isinstance(value, list) and value[0] and sub.is_dir()):
            continue
        safe = sorted(sub.glob("*.safetensors"))
        if not safe and any(p.suffix in PICKLE_SUFFIXES for p in sub.iterdir()):
            raise ModelError(
                f"--model: {sub} holds only pickle weights (.bin/.ckpt); sdcli loads safetensors "
                "only, as pickle files can run code: convert them to .safetensors first"
            )
        for file in safe:
            check_safetensors(file)


def check_safetensors(path: Path) -> None:
    """Header and size check: catches truncated and corrupt files before loading."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > min(size - 8, 100 * 1024 * 1024):
                raise ValueError("header length past the end of the file")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelError(f"--model: {path} is not a valid safetensors file ({exc})") from None
    if 8 + header_len + end != size:
        raise ModelError(
            f"--model: {path} is truncated or corrupt ({size} bytes, header says {8 + header_len + end})"
        )


def model_hash(folder: Path) -> str:
    """A1111-style 10-hex model hash for a diffusers folder.

    Rule: SHA-256 over, for each .safetensors/.json/.txt file below the folder in
    sorted relative-path order, the path (UTF-8, '/'-separated), a NUL byte, then
    the file's bytes; the first 10 hex digits. Cached by path, size and mtime.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in HASHED_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    stamp = [(str(p.relative_to(folder).as_posix()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    cache_file = cache_dir() / "hashes.json"
    key = hashlib.sha256(json.dumps([str(folder.resolve()), stamp]).encode()).hexdigest()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    value = digest.hexdigest()[:10]
    cache[key] = value
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # the cache is an optimisation only
    return value


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


def quiet_libraries() -> None:
    """Silence diffusers/transformers/hub progress bars and warnings; sdcli reports itself.

    Env vars must be set before those libraries are imported (some warn at import);
    already-imported ones are set directly. SDCLI_DEBUG=1 keeps their output.
    """
    import sys
    import warnings

    if os.environ.get("SDCLI_DEBUG", "") not in ("", "0"):
        return
    for var in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(var, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(diffusers|transformers)\b")
    for name in ("diffusers", "transformers"):
        if name in sys.modules:
            logging = sys.modules[name].utils.logging
            logging.set_verbosity_error()
            logging.disable_progress_bar()


def load_pipeline(model: ModelRef, plan: RuntimePlan) -> Any:
    """Load a text-to-image pipeline from a local folder (safetensors only) and apply the plan.

    Other modes share its weights through pipeline_for().
    """
    import diffusers
    import torch

    quiet_libraries()
    try:
        pipe = getattr(diffusers, PIPELINES["txt2img"][0]).from_pretrained(
            model.path,
            dtype=getattr(torch, TORCH_DTYPES[plan.dtype]),
            use_safetensors=True,
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"--model: cannot load {model.path}: {str(exc).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(plan.device)
    apply_memory_options(pipe, plan)
    pipe.sdcli_base_scheduler = pipe.scheduler
    return pipe


# Generation mode -> the diffusers auto-pipeline that runs it, and the UNet input channels
# it accepts: 4 = an ordinary checkpoint (inpaints by blending latents with the mask),
# 9 = a dedicated inpainting checkpoint (latents + mask + masked-image latents).
PIPELINES: dict[str, tuple[str, tuple[int, ...]]] = {
    "txt2img": ("AutoPipelineForText2Image", (4,)),
    "img2img": ("AutoPipelineForImage2Image", (4,)),
    "inpaint": ("AutoPipelineForInpainting", (4, 9)),
    "outpaint": ("AutoPipelineForInpainting", (4, 9)),
}
UNET_KINDS = {4: "an ordinary checkpoint", 9: "a dedicated inpainting checkpoint"}


def pipeline_for(pipe: Any, mode: str) -> Any:
    """The pipeline for `mode` sharing `pipe`'s loaded weights (diffusers' from_pipe: no second load).

    The UNet's input channels decide what it can do; a mismatch is a usage error.
    """
    import diffusers

    auto_class, channels = PIPELINES[mode]
    in_channels = pipe.unet.config.in_channels
    if in_channels not in channels:
        hint = "; use sdcli inpaint or outpaint with it" if in_channels == 9 else ""
        raise ModelError(f"--model: {mode} needs a UNet with {' or '.join(map(str, channels))} input channels; "
                         f"this model's has {in_channels} ({UNET_KINDS.get(in_channels, 'an unknown kind')}){hint}")
    if auto_class == PIPELINES["txt2img"][0]:
        return pipe  # load_pipeline loads this kind
    moved = getattr(diffusers, auto_class).from_pipe(pipe)
    moved.set_progress_bar_config(disable=True)
    moved.sdcli_base_scheduler = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    return moved


def apply_memory_options(pipe: Any, plan: RuntimePlan) -> None:
    """Attention backend and slicing; VAE decodes one image at a time (batch-independent pixels)."""
    if plan.attention == "xformers":
        pipe.enable_xformers_memory_efficient_attention()
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
    pipe.vae.enable_slicing()


def set_sampler(pipe: Any, choice: SamplerChoice) -> None:
    """Swap in the chosen scheduler, built from the model's own scheduler config."""
    import diffusers

    base = getattr(pipe, "sdcli_base_scheduler", pipe.scheduler)
    cls = getattr(diffusers, choice.sampler.scheduler)
    try:
        pipe.scheduler = cls.from_config(base.config, **choice.scheduler_config)
    except ImportError as exc:  # e.g. DPM++ SDE needs torchsde
        raise RuntimeFailure(f"--sampler {choice.sampler.name}: {exc}") from None
