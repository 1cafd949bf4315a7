"""Checks on weight files before anything opens them as tensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from sdcli.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


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
