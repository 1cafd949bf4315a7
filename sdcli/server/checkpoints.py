"""The checkpoints of the server's models folder (--models-dir / --webui-dir), as the WebUI lists them.

The WebUI's model list is read from its Stable-diffusion folder at start and again on
/sdapi/v1/refresh-checkpoints; each checkpoint's title is its path in that folder with its
extension and, once known, its short hash ("sub/model.safetensors [0123456789]"). A client may
name one by that title (with or without the hash), the path with or without extension, the
file name, or the hash; never by a path on the server (server.engine refuses those first).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

_TITLE = re.compile(r"^(.+?)\s*\[[0-9a-fA-F]{8,64}\]$")


@dataclass
class FolderCheckpoint:
    """One checkpoint of the models folder: its entry (models.folders.Entry) and WebUI label."""

    entry: Any
    label: str  # the WebUI's name: the relative path with its extension ("sub/model.safetensors")

    def names(self) -> set[str]:
        """What a client may call it (besides its title)."""
        return {self.label, self.entry.name, self.entry.stem, self.entry.path.name}


@dataclass
class FolderCheckpoints:
    """The models folder's checkpoints, scanned once and again on refresh; `library` is None without a folder."""

    library: Any
    _found: list[FolderCheckpoint] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def all(self) -> list[FolderCheckpoint]:
        with self._lock:
            if self._found is None:
                self._found = self._scan()
            return self._found

    def refresh(self) -> None:
        """/sdapi/v1/refresh-checkpoints: read the folder again now."""
        found = self._scan()
        with self._lock:
            self._found = found

    def _scan(self) -> list[FolderCheckpoint]:
        if self.library is None or self.library.folders.get("checkpoint") is None:
            return []
        found = []
        for entry in self.library.entries("checkpoint"):
            label = entry.name if entry.path.is_dir() else entry.name + entry.path.suffix
            found.append(FolderCheckpoint(entry, label))
        return found

    def find(self, spec: str) -> FolderCheckpoint | None:
        """The checkpoint a client's name means (a WebUI title, with a stale or no hash too), or None."""
        from sdcli.models.hashes import known_model_hash

        spec = spec.strip()
        title = _TITLE.match(spec)
        name = title.group(1) if title else spec
        for checkpoint in self.all():
            if name in checkpoint.names():
                return checkpoint
        if re.fullmatch(r"[0-9a-fA-F]{10}", spec):  # a short hash: only the ones already known
            for checkpoint in self.all():
                if known_model_hash(checkpoint.entry.path) == spec.lower():
                    return checkpoint
        return None
