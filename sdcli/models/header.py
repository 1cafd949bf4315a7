"""The JSON header of a safetensors file: tensor names, shapes, stored dtypes and metadata, read without loading.

A leaf module (imports nothing from sdcli) so that every file-level reader, including the family
modules' own file readers, can use it without an import cycle.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def _raw_header(path: Path) -> dict[str, Any]:
    """The parsed header object of a safetensors file."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(length))
    return header


def read_header(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor shapes and the __metadata__ of a safetensors file, from its JSON header only."""
    header = _raw_header(path)
    metadata = header.pop("__metadata__", None) or {}
    return {name: list(info["shape"]) for name, info in header.items()}, metadata


def read_dtypes(path: Path) -> dict[str, str]:
    """Each tensor's stored dtype as safetensors names it (F8_E4M3, F8_E5M2, BF16, F16, F32, ...)."""
    header = _raw_header(path)
    header.pop("__metadata__", None)
    return {name: str(info["dtype"]) for name, info in header.items()}
