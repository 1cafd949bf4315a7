"""Images in WebUI API payloads: base64 in (written to a private temp folder so sdcli's file checks apply),
base64 PNGs carrying their infotext out."""

from __future__ import annotations

import base64
import binascii
import io
import tempfile
from pathlib import Path
from typing import Any

from sdcli.errors import SdcliError, UsageError


def decode_b64(data: str, field: str) -> bytes:
    """Image bytes from base64 or a data: URL (not decoded as an image here: io.images does that)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise UsageError(f"{field}: not valid base64") from None


def encode_png(image: Any, infotext: str | None) -> str:
    """A base64 PNG carrying the infotext in its "parameters" chunk, as the WebUI sends."""
    from sdcli.io.metadata import png_info

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(infotext) if infotext else None)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def safe_name(name: str) -> str:
    """A client's file name as a plain name in the temp folder (no folders, no dot names)."""
    plain = Path(name.replace("\\", "/").replace("\x00", "")).name[-100:]
    return plain if plain.strip(". ") else "image.png"


class Inputs:
    """Uploaded images written to a private temp folder, so sdcli's file checks apply to them."""

    def __init__(self, **images: tuple[str | None, str]):
        self._dir = tempfile.TemporaryDirectory(prefix="sdcli-serve-")
        self.paths: dict[str, str | None] = {}
        self.fields: dict[str, str] = {}
        for name, (data, field) in images.items():
            if data is None:
                self.paths[name] = None
                continue
            path = Path(self._dir.name) / name
            path.write_bytes(decode_b64(data, field))
            self.paths[name], self.fields[str(path)] = str(path), field

    def add_references(self, images: list[tuple[str, str]], field: str) -> tuple[str, ...]:
        """An edit's reference images, (file name, base64) each, written under their own names (the infotext's
        `Reference hashes` names them) in folders of their own; their paths. Errors name `field`[i] (a CLI
        flag `--image`: `--image: NAME`)."""
        paths = []
        for i, (name, data) in enumerate(images):
            label = f"{field}: {safe_name(name)}" if field.startswith("--") else f"{field}[{i}]"
            folder = Path(self._dir.name) / f"reference-{i}"
            folder.mkdir()
            path = folder / safe_name(name)
            path.write_bytes(decode_b64(data, label))
            paths.append(str(path))
            self.fields[str(path)] = label
        return tuple(paths)

    def explain(self, exc: SdcliError) -> str:
        """The error with temp paths (and the CLI flags naming them) replaced by the request's fields."""
        text = str(exc)
        for path, field in self.fields.items():
            text = text.replace(f"--image: {path}", field).replace(f"--mask: {path}", field).replace(path, field)
        return text

    def __enter__(self) -> Inputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()
