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

from sdcli.errors import RuntimeFailure, UsageError

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
        try:
            os.write(self.fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
        except OSError as exc:  # disk full, a vanished network mount ...
            raise RuntimeFailure(f"{self.path}: cannot write the manifest: {exc.strerror or exc}") from None

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


# Fields each record type must carry, with their JSON types (checked on every read: --resume
# must never silently start over because a record was misread).
# Keys in REQUIRED must be there; TYPED ones are checked when present.
REQUIRED = {"batch": ("digest", "base_seed"), "item": ("item", "status")}
TYPED: dict[str, dict[str, tuple[type, ...]]] = {
    "batch": {"digest": (str,), "base_seed": (int,), "base_number": (int,), "started": (str,), "options": (dict,)},
    "item": {"item": (int,), "seed": (int,), "status": (str,), "path": (str, type(None))},
}


class ManifestError(UsageError):
    """A manifest that cannot be trusted; the message names the file and line."""


def _torn(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether a line that fails to parse is a record cut short by a killed writer (not garbage)."""
    return text.startswith("{") and (exc.pos >= len(text) - 1 or exc.msg.startswith("Unterminated string"))


def _check(path: Path, number: int, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ManifestError(f"{path}:{number}: not a manifest record (a JSON object); cannot use this manifest")
    kind = record.get("type")
    for key, types in TYPED.get(kind, {}).items() if isinstance(kind, str) else ():
        if key not in record and key not in REQUIRED[kind]:
            continue
        value = record.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise ManifestError(f"{path}:{number}: {kind} record field {key!r} is {value!r}; "
                                "cannot use this manifest")
    return record


def read_numbered(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every record of one manifest file.

    A torn line (a record cut short when a run was killed) is skipped; anything
    else unreadable (garbage, wrong types, not UTF-8, a folder) is a ManifestError
    naming the file and line.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8").strip()
            record = json.loads(text)
        except UnicodeDecodeError as exc:
            if line.startswith(b"{") and exc.start >= len(line) - 3:
                continue  # cut inside a multi-byte character
            raise ManifestError(f"{path}:{number}: not UTF-8 text; cannot use this manifest") from None
        except json.JSONDecodeError as exc:
            if _torn(text, exc):
                continue
            raise ManifestError(f"{path}:{number}: not a JSON record ({exc.msg}); cannot use this manifest") from None
        records.append((number, _check(path, number, record)))
    return records


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of one manifest file (see read_numbered)."""
    return [record for _, record in read_numbered(path)]


def load(folder: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run header and every item record of the manifest and any unmerged part files.

    The header must be the manifest's first record: a manifest whose first line
    was lost cannot say how the batch was seeded and numbered.
    """
    header = None
    items: list[dict[str, Any]] = []
    main = folder / MANIFEST
    if main.exists():
        numbered = read_numbered(main)
        if numbered and numbered[0][1].get("type") != "batch":
            raise ManifestError(f"{main}:{numbered[0][0]}: the first record is not the batch header (torn or "
                                "edited); cannot resume from this manifest")
        header = numbered[0][1] if numbered else None
        items += [r for _, r in numbered if r.get("type") == "item"]
    for path in part_paths(folder):
        items += [r for r in read_records(path) if r.get("type") == "item"]
    return header, items


def done_items(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Items whose latest record says done and whose file is on disk (a record without a path: not done)."""
    latest = {r["item"]: r for r in items if isinstance(r.get("item"), int)}
    return {i: r for i, r in latest.items() if r.get("status") == "done" and Path(r.get("path") or "").is_file()}


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
        what = (f"{header['source']} (or the options)" if header.get("source") else
                f"the prompt file{' ' + header['file'] if header.get('file') else ''} (or what its lines ask for)")
        raise UsageError(f"--resume: {what} changed since the batch recorded in {path} started; run it with "
                         "another --output")
    if header.get("seed_given") and old.get("base_seed") != header["base_seed"]:
        raise UsageError(f"--seed: {header['base_seed']} differs from the base seed {old.get('base_seed')} "
                         f"of the batch being resumed; leave --seed out to keep it")
    return old


SPELLED = {"file": "FILE", "fmt": "--prompt-format", "image_format": "--format"}


def flag_name(option: str) -> str:
    """A recorded option's command-line spelling: cfg_scale -> --cfg-scale, file -> FILE."""
    return SPELLED.get(option, "--" + option.replace("_", "-"))


def resume_options(folder: Path, given: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The options of the batch in `folder`: the recorded ones, checked against those given now.

    `given` holds the options typed on this command line, `current` every option's
    value now (defaults included). A given option that differs from the recorded one
    is refused by name (`--steps: 20 in the manifest, 30 now`); the others take the
    recorded value, so `sdcli batch --resume -o DIR` alone continues the batch.
    """
    header, _ = load(folder) if (folder / MANIFEST).exists() else (None, [])
    if header is None:
        if current.get("file") is None:
            raise UsageError(f"--resume: {folder} holds no batch to resume (no {MANIFEST})")
        return current  # nothing recorded yet: --resume of a fresh folder starts the batch
    recorded = header.get("options")
    if not isinstance(recorded, dict):  # a manifest from before sdcli recorded its options
        if current.get("file") is None:
            raise UsageError(f"--resume: {folder / MANIFEST} does not record its prompt file; give FILE too")
        return current
    differences = [f"{flag_name(k)}: {_shown(recorded[k])} in the manifest, {_shown(v)} now"
                   for k, v in given.items() if k in recorded and k != "seed" and recorded[k] != v]
    if differences:
        raise UsageError(f"--resume: the batch in {folder} was started with other options: "
                         + "; ".join(differences) + " (leave them out to keep the recorded ones)")
    return {**current, **{k: v for k, v in recorded.items() if k in current and k not in given}}


def _shown(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value) if isinstance(value, str) and not value else str(value)


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
