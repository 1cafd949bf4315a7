"""Resolve --model to local files: folders, hub ids, the demo model, and model hashes.

Never loads weights; file checks live in models.safety.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.errors import ModelError, RuntimeFailure, UsageError
from sdcli.models.hashes import cache_dir, model_hash  # noqa: F401 (re-exported: callers use resolve.*)
from sdcli.models.safety import PICKLE_SUFFIXES, check_model_index, check_safetensors, refuse_pickle

DEMO_ARCH, DEMO_SEED = "sd1", 0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a local diffusers folder or single-file checkpoint plus how to name it."""

    path: Path
    name: str
    is_demo: bool = False
    source: str | None = None  # what --model should say to load it again (None: the demo)
    kind: str = "folder"  # "folder" (diffusers layout) or "single-file" (WebUI .safetensors)
    family: str | None = None  # families name, when known before loading (single files)
    origin: Path | None = None  # the file the user named, when `path` is sdcli's safetensors copy of a pickle
    # Files of the parts a single file lacks (Flux: ("clip_l", p), ("t5xxl", p), ("vae", p)), set in the plan step.
    parts: tuple[tuple[str, Path], ...] = ()
    # How its diffusion model's weights are stored once loaded (a storage table label, request.storage: "bnb-nf4",
    # "float8-e4m3fn", ...; None: as the file has them), set in the plan step.
    storage: str | None = None
    # The text encoders quantized with it (--quantize-text-encoder: the family's big ones), set in the plan step.
    storage_encoders: tuple[str, ...] = ()

    @property
    def hash_path(self) -> Path:
        """What `Model hash` is computed from: the user's own file (a .ckpt too, as in the WebUI)."""
        return self.origin or self.path


def demo_model() -> ModelRef:
    """The embedded default: a tiny random-weight SD1 model, built once into the cache."""
    from sdcli.models.tiny import build_tiny

    path = cache_dir() / "models" / f"tiny-{DEMO_ARCH}-seed{DEMO_SEED}"
    if not (path / "model_index.json").exists():
        try:
            build_tiny(path, arch=DEMO_ARCH, seed=DEMO_SEED)
        except UsageError:
            if not (path / "model_index.json").exists():  # lost a race, or a broken leftover
                raise
    return ModelRef(path, f"sdcli-tiny-{DEMO_ARCH}-demo", is_demo=True)


def normalize_spec(spec: str | None) -> str | None:
    """One spelling per model: an existing local path becomes absolute (`./m` and `m` are the same model)."""
    if spec and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def resolve_model(spec: str | None, offline: bool = False, library: Any = None,
                  allow_pickle: bool = False) -> ModelRef:
    """Turn --model (folder, name in the models folder, or hub id; None = demo) into a local folder.

    A local path never touches the network; a hub id uses the normal hub cache,
    and only the cache when --offline or HF_HUB_OFFLINE is set. `library` (a
    models.folders.Library) is searched for names that are not paths.
    """
    if not spec:
        return demo_model()
    local = Path(spec).expanduser()
    if not local.exists() and library is not None and library.folders.get("checkpoint") is not None:
        try:
            local = library.find("checkpoint", spec).path
        except ModelError:
            local = _diffusion_model(library, spec) or local  # ComfyUI's diffusion_models/ (a Flux transformer)
            if not local.exists() and not _HUB_ID.match(spec):
                raise
    if local.is_file() and local.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise refuse_pickle(local, "--model")
        from sdcli.models.single_file import convert_pickle

        ref = single_file_ref(convert_pickle(local))
        return replace(ref, name=local.stem, source=str(local.resolve()), origin=local.resolve())
    if local.is_file() and local.suffix.lower() in (".safetensors", ".gguf"):
        return single_file_ref(local)
    if local.exists():
        check_model_folder(local)
        return ModelRef(local.resolve(), local.resolve().name, source=str(local.resolve()))
    if not _HUB_ID.match(spec) or spec.startswith((".", "/", "~")):
        raise ModelError(f"--model: no such folder: {spec}")
    return ModelRef(_hub_snapshot(spec, offline), spec, source=spec)


def _diffusion_model(library: Any, spec: str) -> Path | None:
    """The file `spec` names in the diffusion-model folder (ComfyUI's diffusion_models/ or unet/), or None."""
    if library.folders.get("diffusion_model") is None:
        return None
    try:
        return Path(library.find("diffusion_model", spec).path)
    except ModelError:
        return None


def single_file_ref(path: Path, flag: str = "--model") -> ModelRef:
    """A WebUI single-file checkpoint: checked and its family read from the header (no weights loaded)."""
    from sdcli.models.single_file import inspect

    path = path.resolve()
    if path.suffix.lower() != ".gguf":  # a GGUF's tensor table is read (and checked) by the gguf package
        check_safetensors(path)
    detected = inspect(path, flag)
    return ModelRef(path, path.stem, source=str(path), kind="single-file", family=detected.family.name)


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
        why = "offline mode is on" if offline else "the hub could not be reached"
        raise ModelError(f"--model: {repo_id} is not in the local hub cache and {why} "
                         "(and there is no local folder of that name)") from None
    except Exception as exc:  # network, auth, missing repo: the hub's own message is the best one
        raise RuntimeFailure(f"--model: could not fetch {repo_id} from the hub: {exc}") from None
    path = Path(folder)
    check_model_folder(path)
    return path


def check_model_folder(folder: Path) -> None:
    """Refuse folders that are not diffusers models, hold only pickle weights, or hold corrupt files."""
    if not folder.is_dir():
        raise ModelError(f"--model: {folder} is a file but not a .safetensors checkpoint; sdcli loads "
                         "diffusers model folders and single .safetensors files")
    _refuse_special_files(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(f"--model: {folder} is not a diffusers model folder (no model_index.json)")
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"--model: {index} is not valid JSON: {exc}") from None
    if not isinstance(components, dict):
        raise ModelError(f"--model: {index} is not a diffusers model index (a JSON object of components)")
    check_model_index(index, components)
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


def _refuse_special_files(folder: Path) -> None:
    """FIFOs, devices and sockets in a model folder would block or never end when read: refuse them."""
    for path in [folder / "model_index.json", *(p for sub in folder.iterdir() if sub.is_dir() for p in sub.iterdir())]:
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise ModelError(f"--model: {path} is not a regular file (a FIFO, device or socket); "
                             "sdcli will not read it")

