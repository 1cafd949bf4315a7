"""Hashes of written files that do not depend on the run's temp folder or the clock.

Every path a corpus run touches lies under one root whose absolute path is exactly ROOT_LEN
characters long. In every file that root (UTF-8, and UTF-16-BE as in the EXIF UserComment) is
replaced by TOKEN, of the same length, so sizes and offsets inside EXIF, JPEG and WebP stay as
written. PNGs are then re-chunked with each chunk's CRC recomputed (lengths and data, pixels
included, untouched). `.jsonl` files (manifests), `--json` stdout and the API's `info` lose the
VOLATILE keys (times; the batch manifest's plan digest, a hash over absolute paths) and are
serialised again in their key order. Every other file (`.json` configs, weights, tokenizer files,
JPEG, WebP) is hashed as its exact bytes, root replaced.

Every image file also gets a print (`image_print`): a hash of its format, size, mode and text
metadata, and its RGBA means over a BLOCKS x BLOCKS grid of boxes. CPUs with other SIMD kernels
(AVX2 against AVX-512/AMX, oneDNN's and MKL's own dispatch) move a pixel by one level here and
there (measured: at most 1 level, in at most a few pixels of 113 images); two prints agree when the
metadata is the same and every box mean is within PRINT_TOLERANCE levels.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zlib
from hashlib import sha256
from pathlib import Path
from typing import Any

ROOT_LEN = 120
TOKEN = "/CORPUS-ROOT".ljust(ROOT_LEN, "_")
# Keys of JSON records that hold times, or a hash over absolute paths (a batch manifest's plan "digest").
VOLATILE = frozenset({"started", "seconds", "job_timestamp", "digest"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SDCLI_CORPUS_DUMP=DIR: also write every normalised file to DIR/<hash prefix>/<name>, to diff two runs.
DUMP = os.environ.get("SDCLI_CORPUS_DUMP", "")
BLOCKS = 8
PRINT_TOLERANCE = 1


def _replace_root(data: bytes, root: str) -> bytes:
    for encoding in ("utf-8", "utf-16-be"):
        data = data.replace(root.encode(encoding), TOKEN.encode(encoding))
    return data


def _png(data: bytes, root: str) -> bytes:
    """A PNG with the root replaced in every chunk and each chunk's CRC recomputed."""
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        body = _replace_root(body, root)
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + length
    out.append(data[pos:])  # anything after IEND, kept as it is
    return b"".join(out)


def sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a .safetensors header in place with its `__metadata__` keys sorted (same length, same bytes
    otherwise): safetensors writes that map in a random order in each process."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    raw = data[8:8 + size].decode("utf-8")
    header = json.loads(raw)
    if len(header.get("__metadata__") or {}) < 2:
        return
    assert json.dumps(header, separators=(",", ":")) == raw.rstrip(" "), f"unexpected header layout: {path}"
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    path.write_bytes(data[:8] + json.dumps(header, separators=(",", ":")).ljust(size).encode() + data[8 + size:])


def _drop_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def json_records(data: bytes, root: str) -> bytes:
    """JSON or JSON lines with the root replaced and the VOLATILE keys dropped, serialised again."""
    text = _replace_root(data, root).decode("utf-8")
    try:
        records = [json.loads(text)]
    except json.JSONDecodeError:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return "\n".join(json.dumps(_drop_volatile(r), ensure_ascii=False) for r in records).encode()


def normalised(data: bytes, name: str, root: str) -> bytes:
    """The bytes that are hashed: see the module docstring."""
    if data.startswith(PNG_SIGNATURE):
        return _png(data, root)
    if name.endswith(".jsonl"):
        return json_records(data, root)
    return _replace_root(data, root)


def digest(data: bytes, name: str, root: str) -> str:
    data = normalised(data, name, root)
    if DUMP:
        target = Path(DUMP) / sha256(data).hexdigest()[:16] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sha256(data).hexdigest()


def file_hashes(watched: Path, root: str) -> dict[str, str]:
    """Relative path -> hash of every file at or under `watched` (hidden and temp files included)."""
    if watched.is_file():
        return {watched.name: digest(watched.read_bytes(), watched.name, root)}
    if not watched.exists():
        return {}
    return {p.relative_to(watched).as_posix(): digest(p.read_bytes(), p.name, root)
            for p in sorted(watched.rglob("*")) if p.is_file()}


def records_hash(text: str, root: str) -> str:
    """Hash of --json stdout or an API `info` string: JSON records, root replaced, VOLATILE keys dropped."""
    return sha256(json_records(text.encode(), root)).hexdigest()


def image_print(data: bytes, root: str) -> dict[str, str] | None:
    """{"meta": hash of format, size, mode and str/bytes info (root replaced), "blocks": base64 of the RGBA
    box means on a BLOCKS x BLOCKS grid}, or None when Pillow cannot read `data` as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            head = json.dumps([image.format, list(image.size), image.mode]).encode()
            info = [(k, v if isinstance(v, bytes) else v.encode()) for k, v in sorted(image.info.items())
                    if isinstance(v, (str, bytes))]
            blocks = image.convert("RGBA").resize((BLOCKS, BLOCKS), Image.Resampling.BOX).tobytes()
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    meta = sha256(head + b"".join(k.encode() + b"\0" + _replace_root(v, root) + b"\0" for k, v in info))
    return {"meta": meta.hexdigest(), "blocks": base64.b64encode(blocks).decode()}


def image_prints(watched: Path, root: str) -> dict[str, dict[str, str]]:
    """Relative path -> image_print of every image file at or under `watched` (as file_hashes names them)."""
    files = [watched] if watched.is_file() else sorted(watched.rglob("*")) if watched.exists() else []
    prints = {(p.name if p == watched else p.relative_to(watched).as_posix()): image_print(p.read_bytes(), root)
              for p in files if p.is_file()}
    return {name: value for name, value in prints.items() if value is not None}


def prints_agree(a: dict[str, str] | None, b: dict[str, str] | None) -> bool:
    """True when two image prints have the same metadata and box means within PRINT_TOLERANCE levels."""
    if not a or not b or a["meta"] != b["meta"]:
        return False
    left, right = base64.b64decode(a["blocks"]), base64.b64decode(b["blocks"])
    return len(left) == len(right) and all(abs(x - y) <= PRINT_TOLERANCE for x, y in zip(left, right, strict=True))
