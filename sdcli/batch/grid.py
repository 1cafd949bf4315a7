"""Contact sheets: a labelled grid PNG of a batch (Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

LABEL_CHARS = 40
MIN_CELL, MAX_CELL = 128, 256
PAD = 4


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def excerpt(prompt: str, limit: int = LABEL_CHARS) -> str:
    """The prompt on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(prompt.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def contact_sheet(entries: list[tuple[Any, list[str]]], columns: int | None = None) -> Any:
    """Images in a grid, each with its label lines below it; returns a PIL image.

    Cells are as wide as the widest image, kept between 128 and 256 px (small
    images are scaled up with nearest-neighbour so their pixels stay visible).
    """
    from PIL import Image, ImageDraw

    if not entries:
        raise UsageError("grid: no finished images to put on a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(entries)))
    rows = math.ceil(len(entries) / columns)
    cell = max(MIN_CELL, min(MAX_CELL, max(image.width for image, _ in entries)))
    font_size = 12
    font = _font(font_size)
    label_h = max(len(lines) for _, lines in entries) * (font_size + 4) + PAD
    sheet = Image.new("RGB", (columns * (cell + PAD) + PAD, rows * (cell + label_h + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (image, lines) in enumerate(entries):
        x = PAD + (n % columns) * (cell + PAD)
        y = PAD + (n // columns) * (cell + label_h + PAD)
        scale = cell / max(image.width, image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
        thumb = image.convert("RGB").resize(size, resample)
        sheet.paste(thumb, (x + (cell - size[0]) // 2, y + (cell - size[1]) // 2))
        for k, text in enumerate(lines):
            draw.text((x, y + cell + 2 + k * (font_size + 4)), text, fill="black", font=font)
    return sheet


def manifest_entries(manifest_path: Path) -> list[tuple[Path, list[str]]]:
    """Done items of a manifest in item order: (image path, [prompt excerpt, 'seed N'])."""
    from sdcli.batch.manifest import read_records

    if not manifest_path.is_file():
        raise UsageError(f"MANIFEST: no such file: {manifest_path}")
    latest = {r["item"]: r for r in read_records(manifest_path) if r.get("type") == "item"}
    entries = []
    for index in sorted(latest):
        record = latest[index]
        if record.get("status") != "done":
            continue
        path = Path(record["path"])
        if not path.is_file():  # the batch ran from another working directory
            path = manifest_path.parent / path.name
        if path.is_file():
            entries.append((path, [excerpt(record.get("prompt", "")), f"seed {record['seed']}"]))
    return entries


def write_grid(manifest_path: Path, out: Path | None = None, columns: int | None = None) -> Path:
    """Write the contact sheet of a batch next to its manifest (or to `out`), never overwriting."""
    from PIL import Image

    from sdcli.core.output import write_atomic

    images = []
    for path, lines in manifest_entries(manifest_path):
        with Image.open(path) as im:
            images.append((im.copy(), lines))
    sheet = contact_sheet(images, columns)
    out = out or manifest_path.parent / "grid.png"
    return write_atomic(out.parent, out.stem, out.suffix or ".png", lambda tmp: sheet.save(tmp, format="PNG"))
