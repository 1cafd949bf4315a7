"""The WebUI API's read-only endpoints (what clients list before they generate) and /options.

Shapes are the WebUI's pydantic models (modules/api/models.py; `loras` from its Lora extension,
`sd-modules` from Forge): the same field names and types. Lists come from the server's own
state: its served models and its models folder (--models-dir / --webui-dir). Kinds sdcli does
not have (hypernetworks, face restorers, Real-ESRGAN's downloadable list, extensions) answer
an empty list, never 404. The refresh endpoints answer at once: every list is read from its
folder when asked, but the checkpoints (/sd-models, the names sd_model_checkpoint takes), which are
read once and again on /refresh-checkpoints, as the WebUI's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from sdcli.server import options as opts
from sdcli.server.controlnet_api import SCRIPT as CONTROLNET
from sdcli.server.engine import Engine

_SCALE = re.compile(r"(?:^|[^0-9])([1-8])x|x([1-8])(?:[^0-9]|$)", re.IGNORECASE)


def _entries(engine: Engine, kind: str) -> list[Any]:
    """The models folder's entries of `kind` ([] without a models folder)."""
    return engine.folders.library().entries(kind) if _has_folder(engine) else []


def _has_folder(engine: Engine) -> bool:
    return bool(engine.folders.models_dir or engine.folders.webui_dir or engine.folders.comfy_dir)


def upscaler_scale(name: str) -> int:
    """The scale an upscaler file's name gives ("4x-UltraSharp", "RealESRGAN_x2"); 4 when it gives none."""
    found = _SCALE.search(name)
    return int(found.group(1) or found.group(2)) if found else 4


def header(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Shapes and metadata of a safetensors file; empty for other files and unreadable ones."""
    from sdcli.models.header import read_header

    if path.suffix.lower() != ".safetensors":
        return {}, {}
    try:
        return read_header(path)
    except (OSError, ValueError, KeyError, TypeError):
        return {}, {}


def embedding_item(path: Path) -> dict[str, Any] | None:
    """The WebUI's EmbeddingItem for a safetensors embedding (None: not one sdcli can read without unpickling)."""
    shapes, meta = header(path)
    if not shapes:
        return None
    dims = [shape for shape in shapes.values() if len(shape) == 2]
    if not dims:
        return None
    step = meta.get("step")
    return {"step": int(step) if step and step.isdigit() else None, "sd_checkpoint": meta.get("sd_checkpoint"),
            "sd_checkpoint_name": meta.get("sd_checkpoint_name"),
            "shape": sum(shape[1] for shape in dims), "vectors": dims[0][0]}


def memory() -> dict[str, Any]:
    """The WebUI's MemoryResponse: this process's RAM and, where CUDA is up, the GPU's."""
    try:
        import psutil

        process = psutil.Process(os.getpid())
        rss = process.memory_info().rss
        total = psutil.virtual_memory().total
        ram: dict[str, Any] = {"free": total - rss, "used": rss, "total": total}
    except Exception as exc:  # the WebUI reports the error in place of the numbers
        ram = {"error": str(exc)}
    try:
        import torch

        if not torch.cuda.is_available():
            cuda: dict[str, Any] = {"error": "unavailable"}
        else:
            free, total = torch.cuda.mem_get_info()
            stats = torch.cuda.memory_stats()
            pair = lambda k: {"current": stats.get(f"{k}.all.current", 0), "peak": stats.get(f"{k}.all.peak", 0)}  # noqa: E731
            cuda = {"system": {"free": free, "used": total - free, "total": total},
                    "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                    "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                    "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except Exception as exc:
        cuda = {"error": str(exc)}
    return {"ram": ram, "cuda": cuda}


def add_catalog_routes(app: FastAPI, engine: Engine, flags: dict[str, Any] | None = None) -> None:
    """The read-only WebUI endpoints and GET/POST /sdapi/v1/options on `app`."""

    @app.get("/sdapi/v1/options")
    def get_options() -> dict[str, Any]:
        return opts.current(engine)

    @app.post("/sdapi/v1/options")
    def set_options(values: dict[str, Any]) -> None:
        opts.apply(engine, values)

    @app.get("/sdapi/v1/cmd-flags")
    def cmd_flags() -> dict[str, Any]:
        return cmd_flags_of(engine, flags or {})

    @app.get("/sdapi/v1/upscalers")
    def upscalers() -> list[dict[str, Any]]:
        from sdcli.models.upscalers import PIL_FILTERS

        builtin = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
                   for name in PIL_FILTERS]
        files = [{"name": e.name, "model_name": "ESRGAN", "model_path": str(e.path), "model_url": None,
                  "scale": upscaler_scale(e.stem)} for e in _entries(engine, "upscaler")]
        return builtin + files

    @app.get("/sdapi/v1/latent-upscale-modes")
    def latent_upscale_modes() -> list[dict[str, Any]]:
        from sdcli.models.upscalers import LATENT_MODES

        return [{"name": name} for name in LATENT_MODES]

    @app.get("/sdapi/v1/sd-vae")
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": e.path.name, "filename": str(e.path)} for e in _entries(engine, "vae")]

    @app.get("/sdapi/v1/sd-modules")
    def sd_modules() -> list[dict[str, Any]]:  # Forge: the "VAE / Text Encoder" files
        return [{"model_name": e.path.name, "filename": str(e.path)}
                for kind in ("vae", "text_encoder") for e in _entries(engine, kind)]

    @app.get("/sdapi/v1/loras")
    def loras() -> list[dict[str, Any]]:
        items = []
        for entry in _entries(engine, "lora"):
            meta: dict[str, Any] = dict(header(entry.path)[1])
            items.append({"name": entry.stem, "alias": meta.get("ss_output_name") or entry.stem,
                          "path": str(entry.path), "metadata": meta})
        return items

    @app.get("/sdapi/v1/embeddings")
    def embeddings() -> dict[str, Any]:
        loaded, skipped = {}, {}
        for entry in _entries(engine, "embedding"):
            item = embedding_item(entry.path)
            if item is None:  # a pickle (.pt/.bin): the server loads no pickles
                skipped[entry.stem] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                       "shape": 0, "vectors": 0}
            else:
                loaded[entry.stem] = item
        return {"loaded": loaded, "skipped": skipped}

    @app.get("/sdapi/v1/prompt-styles")
    def prompt_styles() -> list[dict[str, Any]]:
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in engine_styles(engine)]

    @app.get("/sdapi/v1/face-restorers")
    def face_restorers() -> list[dict[str, Any]]:  # those with a file in the models folder (models.faces)
        from sdcli.models.faces import RESTORERS

        folders = engine.folders.library().folders if _has_folder(engine) else {}
        return [{"name": row.label, "cmd_dir": str(folders[row.kind])} for key, row in RESTORERS.items()
                if any(key in e.path.name.lower() for e in _entries(engine, row.kind))]

    for path in ("hypernetworks", "realesrgan-models", "extensions"):
        app.add_api_route(f"/sdapi/v1/{path}", _empty, methods=["GET"], name=path)
    for path in ("refresh-vae", "refresh-loras", "refresh-embeddings"):
        app.add_api_route(f"/sdapi/v1/{path}", _nothing, methods=["POST"], name=path)

    @app.post("/sdapi/v1/refresh-checkpoints")
    def refresh_checkpoints() -> None:  # the WebUI's list_models(): the folder's checkpoints read again
        engine.refresh_checkpoints()

    @app.get("/sdapi/v1/script-info")
    def script_info() -> list[dict[str, Any]]:
        listed = [*SCRIPT_INFO, *((XYZ, tab == "img2img", _xyz_args(tab)) for tab in ("txt2img", "img2img"))]
        selectable = [{"name": name, "is_alwayson": False, "is_img2img": img2img, "args": [_arg(*a) for a in args]}
                      for name, img2img, args in listed]
        # The ControlNet extension's always-on script, on both tabs (its units come as alwayson_scripts dicts).
        return selectable + [{"name": CONTROLNET, "is_alwayson": True, "is_img2img": img2img, "args": []}
                             for img2img in (False, True)]

    @app.get("/sdapi/v1/memory")
    def get_memory() -> dict[str, Any]:
        return memory()


_SIDES = ["left", "right", "up", "down"]
# The selectable scripts sdcli runs: (name, is_img2img, args as (label, value, minimum, maximum, step, choices)),
# in the order their script_args are read, as the WebUI's scripts declare them.
_PROMPTS_ARGS: tuple[tuple[Any, ...], ...] = (
    ("Iterate seed every line", False, None, None, None, None),
    ("Use same random seed for all lines", False, None, None, None, None),
    ("Insert prompts at the", "start", None, None, None, ["start", "end"]),
    ("List of prompt inputs", "", None, None, None, None))
SCRIPT_INFO: tuple[tuple[str, bool, tuple[tuple[Any, ...], ...]], ...] = (
    ("prompts from file or textbox", False, _PROMPTS_ARGS),
    ("prompts from file or textbox", True, _PROMPTS_ARGS),
    ("sd upscale", True, (
        ("info", "", None, None, None, None), ("Tile overlap", 64, 0, 256, 16, None),
        ("Upscaler", "Lanczos", None, None, None, None), ("Scale Factor", 2.0, 1.0, 4.0, 0.05, None))),
    ("poor man's outpainting", True, (
        ("Pixels to expand", 128, 8, 256, 8, None), ("Mask blur", 4, 0, 64, 1, None),
        ("Masked content", "fill", None, None, None, ["fill", "original", "latent noise", "latent nothing"]),
        ("Outpainting direction", _SIDES, None, None, None, _SIDES))),
    ("outpainting mk2", True, (
        ("Pixels to expand", 128, 8, 256, 8, None), ("Mask blur", 8, 0, 64, 1, None),
        ("Outpainting direction", _SIDES, None, None, None, _SIDES),
        ("Fall-off exponent (lower=higher detail)", 1.0, 0.0, 4.0, 0.01, None),
        ("Color variation", 0.05, 0.0, 1.0, 0.01, None))),
)


XYZ = "x/y/z plot"


def _xyz_args(tab: str) -> tuple[tuple[Any, ...], ...]:
    """The X/Y/Z plot's arguments as the WebUI declares them (axis types are indices into the tab's labels)."""
    from sdcli.server.scripts import xyz_labels

    labels = xyz_labels(tab)
    rows: list[tuple[Any, ...]] = []
    for n, axis in enumerate("XYZ"):
        rows += [(f"{axis} type", labels[1 if n == 0 else 0], None, None, None, labels),
                 (f"{axis} values", "", None, None, None, None), (f"{axis} values", None, None, None, None, None)]
    rows += [(label, label == "Draw legend", None, None, None, None) for label in (
        "Draw legend", "Include Sub Images", "Include Sub Grids", "Keep -1 for seeds", "Vary seeds for X",
        "Vary seeds for Y", "Vary seeds for Z")]
    rows += [("Grid margins (px)", 0, 0, 500, 2, None), ("Use text inputs instead of dropdowns", False, None, None,
                                                         None, None)]
    return tuple(rows)


def _arg(label: str, value: Any, minimum: Any, maximum: Any, step: Any, choices: Any) -> dict[str, Any]:
    return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step, "choices": choices}


def _empty() -> list[Any]:
    return []


def _nothing() -> None:
    return None


def engine_styles(engine: Engine) -> list[Any]:
    """The server's prompt styles (styles.csv of --webui-dir, or --styles FILE); [] when none."""
    return list(engine.styles)


def cmd_flags_of(engine: Engine, flags: dict[str, Any]) -> dict[str, Any]:
    """The WebUI's command-line flags (vars(cmd_opts)) that have a meaning in `sdcli serve`, from its real state."""
    library = engine.folders.library().folders if _has_folder(engine) else {}
    folder = lambda kind: str(library[kind]) if kind in library else None  # noqa: E731
    return {
        "api": True, "nowebui": True, "listen": bool(flags.get("listen", False)), "port": flags.get("port"),
        "api_auth": None,  # never echoed
        "data_dir": engine.folders.webui_dir, "models_dir": engine.folders.models_dir,
        "ckpt": str(engine.current.ref.path), "ckpt_dir": folder("checkpoint"), "vae_dir": folder("vae"),
        "lora_dir": folder("lora"), "embeddings_dir": folder("embedding"), "esrgan_models_path": folder("upscaler"),
        "text_encoder_dir": folder("text_encoder"), "controlnet_dir": folder("controlnet"),
        "hypernetwork_dir": None, "styles_file": [str(p) for p in flags.get("styles_files", [])],
        "device_id": None, "precision": "autocast", "no_half": engine.runtime.dtype == "fp32",
        "medvram": False, "lowvram": False, "xformers": bool(engine.runtime.xformers), "api_log": False,
        "cors_allow_origins": None, "skip_version_check": True, "disable_safe_unpickle": False,
        "queue_size": engine.queue_size,
    }
