"""Output files: name patterns, running numbers, atomic no-clobber writes."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sdcli.errors import RuntimeFailure, UsageError

DEFAULT_PATTERN = "[num]-[seed]"
MAX_NAME = 150  # characters of a generated file name stem
MAX_NAME_BYTES = 200  # ... and UTF-8 bytes: most file systems allow 255 per name, leaving room for "-N.webp"
# link() errors meaning "this file system has no hard links" (FAT/exFAT, some network mounts).
NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EMLINK}
_FIELD = re.compile(r"\[([a-z_]+)\]")
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')
_NUMBERED = re.compile(r"^(\d{5,})-")
_TEMP = re.compile(r"^\.sdcli-(\d+)-.*\.tmp$")

# Pattern fields -> how to get them from the per-image values. One row a field.
FIELDS: dict[str, Any] = {
    "num": lambda v: f"{v['num']:05d}",
    "seed": lambda v: str(v["seed"]),
    "steps": lambda v: str(v["steps"]),
    "cfg": lambda v: f"{v['cfg_scale']:g}",
    "sampler": lambda v: v["sampler"],
    "width": lambda v: str(v["width"]),
    "height": lambda v: str(v["height"]),
    "prompt_words": lambda v: " ".join(v["prompt_plain"].split()[:8]),
    "model_name": lambda v: v["model"],
    "date": lambda v: v.get("now", _dt.datetime.now()).date().isoformat(),
    "datetime": lambda v: v.get("now", _dt.datetime.now()).strftime("%Y%m%d-%H%M%S"),
    "index": lambda v: str(v["index"]),
    "input": lambda v: v.get("input") or "txt2img",  # the input image's file name without suffix
}


def check_pattern(pattern: str) -> None:
    """Reject unknown [fields] up front, naming the flag."""
    unknown = [f for f in _FIELD.findall(pattern) if f not in FIELDS]
    if unknown:
        raise UsageError(
            f"--name: unknown field [{unknown[0]}] in {pattern!r}; "
            f"fields: {', '.join(f'[{f}]' for f in FIELDS)}"
        )
    if not pattern.strip() or "/" in pattern or "\\" in pattern:
        raise UsageError(f"--name: {pattern!r} must be a non-empty file name without '/'")


def sanitize(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """Replace characters unsafe in file names and cap the length (characters and UTF-8 bytes)."""
    name = _UNSAFE.sub("_", name).strip(" .")[:MAX_NAME]
    return shorten(name, max_bytes) or "image"


def shorten(name: str, max_bytes: int) -> str:
    """`name` cut at a character boundary to at most `max_bytes` UTF-8 bytes."""
    encoded = name.encode("utf-8", errors="surrogateescape")
    if len(encoded) <= max_bytes:
        return name
    return encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip(" .")


def name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of `folder` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def render_name(pattern: str, values: dict[str, Any]) -> str:
    """File stem from a pattern such as "[num]-[seed]-[prompt_words]"."""
    return sanitize(_FIELD.sub(lambda m: sanitize(FIELDS[m.group(1)](values)), pattern))


def check_folder(folder: Path) -> None:
    """Before any work: the output folder exists and is writable, or could be created (nothing is created)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--output: cannot write to {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output: cannot write to {folder}: permission denied on {existing}")


def missing_folders(folder: Path) -> list[Path]:
    """The folders `folder` and its parents that do not exist yet, deepest first (what prepare_folder creates)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove these folders (deepest first) while they are empty: a job that failed before writing anything
    leaves no folder it created behind. A folder holding anything stays, with its parents."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def prepare_folder(folder: Path, clean: bool = True) -> Path:
    """Create the output folder, prove it is writable (naming --output on failure), clear stale temp files
    (unless `clean` is False: the batch runner clears and counts them itself)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sdcli-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--output: cannot write to {folder}: {exc.strerror or exc}") from None
    if clean:
        remove_stale_temps(folder)
    return folder


def next_number(folder: Path) -> int:
    """The next running number: one more than the highest NNNNN- prefix present."""
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def write_atomic(folder: Path, stem: str, suffix: str, save) -> Path:
    """Write via `save(tmp_path)` to a temp file, then put it in place without clobbering.

    If `stem + suffix` exists, `-1`, `-2`, ... are appended; a name longer than the
    file system allows is shortened (the extension kept). A crash leaves either the
    whole file or nothing (plus, at worst, a hidden `.sdcli-PID-*.tmp` that
    remove_stale_temps() clears once PID is gone). On file systems without hard links
    the name is reserved by an exclusive create and the temp file renamed over it.
    """
    stem = shorten(stem, name_limit(folder) - len(suffix.encode()) - 6) or "image"  # 6: room for "-99999"
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".sdcli-{os.getpid()}-", suffix=".tmp")
    except OSError as exc:  # no such folder, not writable: one line, not a traceback
        raise RuntimeFailure(f"writing {folder / (stem + suffix)} failed: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save(tmp)
        _normal_permissions(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        for attempt in range(10000):
            target = folder / f"{stem}{'' if attempt == 0 else f'-{attempt}'}{suffix}"
            if _place(tmp, target):
                return target
        raise RuntimeFailure(f"could not find a free file name for {stem}{suffix} in {folder}")
    except OSError as exc:
        raise RuntimeFailure(f"writing {folder / (stem + suffix)} failed: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _normal_permissions(path: Path) -> None:
    """mkstemp makes 0600; give images the umask's permissions (file systems without chmod keep theirs)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _place(tmp: Path, target: Path) -> bool:
    """Put `tmp` at `target` unless something is there already; False when taken."""
    try:
        os.link(tmp, target)  # fails if target exists: never overwrites
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
    try:  # no hard links here: reserve the name exclusively, then rename our file over our reservation
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        return False
    try:
        os.replace(tmp, target)
    except OSError:
        target.unlink(missing_ok=True)
        raise
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files left by killed sdcli processes (their PID no longer runs); return how many."""
    removed = 0
    for path in folder.iterdir():
        match = _TEMP.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
