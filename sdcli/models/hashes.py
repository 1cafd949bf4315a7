"""Model hashes as the WebUI writes them (`Model hash`), cached so an unchanged file is read once.

A single file's hash is the WebUI's short hash: SHA-256 of the whole file, first 10
hex digits (its "new" hash, modules/hashes.py; not the old 0x10000-byte one).
Results are cached in sdcli's cache (hashes.json) keyed by the resolved path, size and
mtime (ns), as the WebUI keys its cache by mtime: a 6 GB checkpoint is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Files read by the model-hash rule for folders (see folder_digest).
HASHED_SUFFIXES = (".safetensors", ".json", ".txt")
CHUNK = 1 << 20


def cache_dir() -> Path:
    """sdcli's cache folder ($SDCLI_CACHE, else $XDG_CACHE_HOME/sdcli, else ~/.cache/sdcli)."""
    if env := os.environ.get("SDCLI_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sdcli"


def model_hash(path: Path) -> str:
    """10-hex model hash of a single file (WebUI rule) or a diffusers folder (sdcli's rule)."""
    return (file_sha256(path) if path.is_file() else folder_sha256(path))[:10]


def known_model_hash(path: Path) -> str | None:
    """model_hash() when the cache has it already, else None: reads no weights (the WebUI's model list shows a
    checkpoint's hash only once it is known)."""
    try:
        found = _lookup(_file_key(path) if path.is_file() else _folder_key(path, _folder_files(path)))
    except OSError:
        return None
    return found[:10] if found else None


def file_sha256(path: Path) -> str:
    """Full SHA-256 of a file, from the cache when path, size and mtime are unchanged."""
    return _cached(_file_key(path), lambda: _digest_files(path.parent, [path], with_names=False))


def _file_key(path: Path) -> str:
    stat = path.stat()
    return json.dumps(["file", str(path.resolve()), stat.st_size, stat.st_mtime_ns])


def folder_sha256(folder: Path) -> str:
    """SHA-256 for a diffusers folder.

    Rule: over each .safetensors/.json/.txt file below the folder in sorted
    relative-path order, the path (UTF-8, '/'-separated), a NUL byte, then the
    file's bytes. Cached by path, and each file's size and mtime.
    """
    files = _folder_files(folder)
    return _cached(_folder_key(folder, files), lambda: _digest_files(folder, files, with_names=True))


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in HASHED_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _folder_key(folder: Path, files: list[Path]) -> str:
    stamp = [(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps([str(folder.resolve()), stamp])


def _digest_files(root: Path, files: list[Path], with_names: bool) -> str:
    digest = hashlib.sha256()
    for p in files:
        if with_names:
            digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _load() -> dict[str, str]:
    try:
        cache = json.loads((cache_dir() / "hashes.json").read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}  # a damaged cache file: start it again


def _lookup(key_text: str) -> str | None:
    """The cached SHA-256 for `key_text`, or None."""
    found = _load().get(hashlib.sha256(key_text.encode()).hexdigest())
    return found if isinstance(found, str) and len(found) == 64 else None


def _cached(key_text: str, compute) -> str:
    """Look `key_text` up in the hash cache; compute and store it when absent."""
    cache_file = cache_dir() / "hashes.json"
    key = hashlib.sha256(key_text.encode()).hexdigest()
    cache = _load()
    if not isinstance(cache.get(key, ""), str):
        cache = {}
    if len(cache.get(key, "")) == 64:
        return cache[key]
    value = compute()
    cache[key] = value
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # the cache is an optimisation only
    return value


def legacy_hash(path: Path) -> str:
    """The WebUI's old model hash (sd_models.model_hash): sha256 of 64 KiB at 1 MiB, 8 hex digits."""
    with open(path, "rb") as fh:
        fh.seek(0x100000)
        return hashlib.sha256(fh.read(0x10000)).hexdigest()[:8]
