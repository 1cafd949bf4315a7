"""The batch manifest: a JSONL file in the output folder, appended as items finish.

Line 1 is the run header (`"type": "batch"`: plan digest, base seed, first file
number, start time); then one `"type": "item"` record per finished item (line,
item, seed, path, status, error, seconds). Each record is one `write()` on an
O_APPEND descriptor, so a killed process leaves at worst one torn last line,
which readers skip. With several processes each appends to its own part file
and ends it with a `"type": "end"` record; the main process merges the parts.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

MANIFEST = "manifest.jsonl"
_PART = re.compile(r"^manifest\.part(\d+)\.jsonl$")


def part_path(folder: Path, process: int) -> Path:
    return folder / f"manifest.part{process}.jsonl"


def part_paths(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _PART.match(p.name)), key=lambda p: int(_PART.match(p.name)[1]))


class ManifestWriter:
    """Appends one JSON record per line; every record reaches the OS before append() returns."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size and not _ends_with_newline(path):
            os.write(self.fd, b"\n")  # a torn record from a killed run: start on a fresh line

    def append(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of one manifest file (torn or foreign lines are skipped)."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def load(folder: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run header and every item record of the manifest and any unmerged part files."""
    header = None
    items: list[dict[str, Any]] = []
    paths = [folder / MANIFEST] if (folder / MANIFEST).exists() else []
    for path in paths + part_paths(folder):
        for record in read_records(path):
            if record.get("type") == "batch" and header is None:
                header = record
            elif record.get("type") == "item":
                items.append(record)
    return header, items


def done_items(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Items whose latest record says done and whose file is on disk."""
    latest = {r["item"]: r for r in items if isinstance(r.get("item"), int)}
    return {i: r for i, r in latest.items() if r.get("status") == "done" and Path(r.get("path", "")).is_file()}


def start(folder: Path, header: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Open or continue the batch recorded in `folder`; return the header in force.

    A new batch writes the header; --resume keeps the recorded one (its base seed,
    numbering and date), refusing a different prompt file or options.
    """
    path = folder / MANIFEST
    old, _ = load(folder) if path.exists() or part_paths(folder) else (None, [])
    if old is None:
        with ManifestWriter(path) as writer:
            writer.append(header)
        return header
    if not resume:
        raise UsageError(f"--output: {folder} already holds a batch ({MANIFEST}); pass --resume to "
                         "continue it, or choose another --output")
    if old.get("digest") != header["digest"]:
        raise UsageError(f"--resume: the prompt file or options differ from the batch recorded in "
                         f"{path}; run them with another --output")
    if header.get("seed_given") and old.get("base_seed") != header["base_seed"]:
        raise UsageError(f"--seed: {header['base_seed']} differs from the base seed {old.get('base_seed')} "
                         f"of the batch being resumed; leave --seed out to keep it")
    return old


def merge_parts(folder: Path) -> None:
    """Fold the part files into manifest.jsonl (item records sorted by item), atomically."""
    parts = part_paths(folder)
    if not parts:
        return
    main = folder / MANIFEST
    kept = read_records(main) if main.exists() else []
    new = [r for p in parts for r in read_records(p) if r.get("type") == "item"]
    new.sort(key=lambda r: r.get("item", 0))
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept + new), encoding="utf-8")
    os.replace(tmp, main)
    for p in parts:
        p.unlink(missing_ok=True)


def wait_for_parts(folder: Path, processes: int, poll: float = 0.2) -> list[dict[str, Any]]:
    """Block until every process's part file ends with its end record; return those records.

    The launcher (accelerate/torchrun) stops the whole group if a process dies,
    so a missing end record never makes this wait forever.
    """
    while True:
        ends = {}
        for p in part_paths(folder):
            for record in read_records(p):
                if record.get("type") == "end":
                    ends[record["process"]] = record
        if len(ends) >= processes:
            return [ends[k] for k in sorted(ends)]
        time.sleep(poll)
