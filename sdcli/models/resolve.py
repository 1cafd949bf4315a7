"""Resolve --model to local files: folders, hub ids, the demo model, and model hashes.

Never loads weights; file checks live in models.safety.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sdcli.errors import ModelError, RuntimeFailure, UsageError
from sdcli.models.hashes import cache_dir, model_hash  # noqa: F401 (re-exported: callers use resolve.*)
from sdcli.models.safety import PICKLE_SUFFIXES, check_safetensors

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
    family: str | None = None  # models.families name, when known before loading (single files)


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


def resolve_model(spec: str | None, offline: bool = False) -> ModelRef:
    """Turn --model (folder or hub id; None = demo) into a local folder.

    A local path never touches the network; a hub id uses the normal hub cache,
    and only the cache when --offline or HF_HUB_OFFLINE is set.
    """
    if not spec:
        return demo_model()
    local = Path(spec).expanduser()
    if local.is_file() and local.suffix == ".safetensors":
        return single_file_ref(local)
    if local.exists():
        check_model_folder(local)
        return ModelRef(local.resolve(), local.resolve().name, source=str(local.resolve()))
    if not _HUB_ID.match(spec) or spec.startswith((".", "/", "~")):
        raise ModelError(f"--model: no such folder: {spec}")
    return ModelRef(_hub_snapshot(spec, offline), spec, source=spec)


def single_file_ref(path: Path, flag: str = "--model") -> ModelRef:
    """A WebUI single-file checkpoint: checked and its family read from the header (no weights loaded)."""
    from sdcli.models.single_file import inspect

    path = path.resolve()
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
        raise ModelError(f"--model: {folder} is a file but not a .safetensors checkpoint; sdcli loads "
                         "diffusers model folders and single .safetensors files")
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
