"""Contact sheets: a labelled grid PNG of a batch (Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError

LABEL_CHARS = 40
MIN_CELL, MAX_CELL = 128, 256
PAD = 4
FONT_SIZE = 12


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


MAX_GRID_PIXELS = 100_000_000  # a sheet larger than this is refused before it is allocated (README "Limits")


def _layout(sizes: list[tuple[int, int]], label_lines: int, columns: int | None) -> tuple[int, int, int, int]:
    """(columns, rows, cell side, label height) for images of these sizes."""
    columns = columns or math.ceil(math.sqrt(len(sizes)))
    rows = math.ceil(len(sizes) / columns)
    cell = max(MIN_CELL, min(MAX_CELL, max(width for width, _ in sizes)))
    return columns, rows, cell, label_lines * (FONT_SIZE + 4) + PAD



def contact_sheet(entries: list[tuple[Any, list[str]]], columns: int | None = None) -> Any:
    """Images in a grid, each with its label lines below it; returns a PIL image.

    An entry's image may be a PIL image or a path: paths are opened one at a time
    and closed once pasted, so a sheet of many images never holds them all. Cells
    are as wide as the widest image, kept between 128 and 256 px (small images are
    scaled up with nearest-neighbour so their pixels stay visible).
    """
    from PIL import Image, ImageDraw

    if not entries:
        raise UsageError("grid: no finished images to put on a contact sheet")
    sizes = [_size(image) for image, _ in entries]
    columns, rows, cell, label_h = _layout(sizes, max(len(lines) for _, lines in entries), columns)
    width, height = columns * (cell + PAD) + PAD, rows * (cell + label_h + PAD) + PAD
    if width * height > MAX_GRID_PIXELS:
        raise UsageError(f"grid: {len(entries)} images make a {width}x{height} sheet, over the "
                         f"{MAX_GRID_PIXELS:,} pixel limit; use fewer images or another --columns")
    font = _font(FONT_SIZE)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (image, lines) in enumerate(entries):
        x = PAD + (n % columns) * (cell + PAD)
        y = PAD + (n // columns) * (cell + label_h + PAD)
        scale = cell / max(sizes[n])
        size = (max(1, round(sizes[n][0] * scale)), max(1, round(sizes[n][1] * scale)))
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
        with _opened(image) as im:
            thumb = im.convert("RGB").resize(size, resample)
        sheet.paste(thumb, (x + (cell - size[0]) // 2, y + (cell - size[1]) // 2))
        for k, text in enumerate(lines):
            draw.text((x, y + cell + 2 + k * (FONT_SIZE + 4)), text, fill="black", font=font)
    return sheet


def _size(image: Any) -> tuple[int, int]:
    """An image's size; for a path, from its header only (no pixels decoded)."""
    if not isinstance(image, Path):
        return image.size
    from PIL import Image

    try:
        with Image.open(image) as im:
            return im.size
    except (OSError, ValueError) as exc:
        raise UsageError(f"grid: {image} is not a readable image ({exc})") from None


def _opened(image: Any) -> Any:
    """A context manager giving the PIL image (opened from a path, closed after)."""
    from contextlib import nullcontext

    from PIL import Image

    return Image.open(image) if isinstance(image, Path) else nullcontext(image)


def manifest_entries(manifest_path: Path) -> list[tuple[Path, list[str]]]:
    """Done items of a manifest in item order: (image path, [prompt excerpt, 'seed N'])."""
    from sdcli.batch.manifest import ManifestError, read_numbered

    if not manifest_path.is_file():
        raise UsageError(f"MANIFEST: no such file: {manifest_path}")
    latest = {r["item"]: (n, r) for n, r in read_numbered(manifest_path) if r.get("type") == "item"}
    entries = []
    for index in sorted(latest):
        number, record = latest[index]
        if record.get("status") != "done":
            continue
        if not isinstance(record.get("path"), str) or not isinstance(record.get("seed"), int):
            raise ManifestError(f"{manifest_path}:{number}: done item {index} lacks its path or seed")
        path = Path(record["path"])
        if not path.is_file():  # the batch ran from another working directory
            path = manifest_path.parent / path.name
        if path.is_file():
            prompt = record.get("prompt")
            entries.append((path, [excerpt(prompt if isinstance(prompt, str) else ""), f"seed {record['seed']}"]))
    return entries


def write_grid(manifest_path: Path, out: Path | None = None, columns: int | None = None) -> Path:
    """Write the contact sheet of a batch next to its manifest (or to `out`, its folder created), never
    overwriting."""
    from sdcli.io.output import prepare_folder, write_atomic

    sheet = contact_sheet(manifest_entries(manifest_path), columns)  # images streamed from disk
    out = out or manifest_path.parent / "grid.png"
    prepare_folder(out.parent, clean=False)  # a folder that cannot be made or written: one line naming --output
    return write_atomic(out.parent, out.stem, out.suffix or ".png", lambda tmp: sheet.save(tmp, format="PNG"))
