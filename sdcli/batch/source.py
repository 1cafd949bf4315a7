"""Reading a prompt file: from disk or stdin, size-limited, strict UTF-8, split only on real line breaks."""

from __future__ import annotations

import re
from pathlib import Path

from sdcli.errors import UsageError

MAX_FILE_BYTES = 16 * 1024 * 1024  # a prompt file larger than this is refused before it is read (README "Limits")
LINE_BREAK = re.compile(r"\r?\n")


def read_prompt_file(path: Path) -> str:
    """The text of a prompt file (`-` = stdin), size-limited and strictly UTF-8 (a BOM is dropped)."""
    import sys

    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"FILE: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"FILE: {path} is over {MAX_FILE_BYTES // 2**20} MiB, the prompt file limit; split it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"FILE: {path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
