"""Output files: name patterns, running numbers, atomic no-clobber writes."""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sdcli.errors import RuntimeFailure, UsageError

DEFAULT_PATTERN = "[num]-[seed]"
MAX_NAME = 150
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


def sanitize(name: str) -> str:
    """Replace characters unsafe in file names and cap the length."""
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:MAX_NAME] or "image"


def render_name(pattern: str, values: dict[str, Any]) -> str:
    """File stem from a pattern such as "[num]-[seed]-[prompt_words]"."""
    return sanitize(_FIELD.sub(lambda m: sanitize(FIELDS[m.group(1)](values)), pattern))


def prepare_folder(folder: Path) -> Path:
    """Create the output folder and prove it is writable, naming --output on failure."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sdcli-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--output: cannot write to {folder}: {exc.strerror or exc}") from None
    return folder


def next_number(folder: Path) -> int:
    """The next running number: one more than the highest NNNNN- prefix present."""
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def write_atomic(folder: Path, stem: str, suffix: str, save) -> Path:
    """Write via `save(tmp_path)` to a temp file, then link it into place without clobbering.

    If `stem + suffix` exists, `-1`, `-2`, ... are appended. A crash leaves either
    the whole file or nothing (plus, at worst, a hidden `.sdcli-PID-*.tmp` that
    remove_stale_temps() clears once PID is gone).
    """
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".sdcli-{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give images normal permissions
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        for attempt in range(10000):
            target = folder / f"{stem}{'' if attempt == 0 else f'-{attempt}'}{suffix}"
            try:
                os.link(tmp, target)  # fails if target exists: never overwrites
                return target
            except FileExistsError:
                continue
        raise RuntimeFailure(f"could not find a free file name for {stem}{suffix} in {folder}")
    except OSError as exc:
        raise RuntimeFailure(f"writing {folder / (stem + suffix)} failed: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


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
