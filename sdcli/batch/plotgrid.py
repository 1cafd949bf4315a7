"""X/Y/Z plot grids: the cells with the WebUI's labels (columns on top, rows on the left), Pillow only.

As the WebUI's draw_grid_annotations: one header band over the columns and a left band
3/4 of a cell wide for the rows, text wrapped to fit, font size (cell width + height) / 25.
Two sdcli rules keep labels readable at any image size: cells smaller than MIN_CELL are
shown at a whole multiple (nearest neighbour, so each image pixel is a clean block) and the
font is never under MIN_FONT. Cells are opened from disk one at a time.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from sdcli.batch.grid import MAX_GRID_PIXELS, _font
from sdcli.errors import RuntimeFailure

MIN_CELL = 128  # smallest side a cell is shown at (by a whole-number scale)
MIN_FONT = 12
BLACK, GREY = (0, 0, 0), (153, 153, 153)


def cell_scale(size: tuple[int, int]) -> int:
    """The whole-number scale a cell of this size is shown at (1 from MIN_CELL up)."""
    return max(1, math.ceil(MIN_CELL / max(1, min(size))))


def font_size(width: int, height: int) -> int:
    """The WebUI's label size for cells of this size, at least MIN_FONT."""
    return max(MIN_FONT, (width + height) // 25)


def wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """Words on lines no wider than `width` (a word wider than that is cut into pieces)."""
    lines: list[str] = []
    for word in text.split():
        for piece in _pieces(draw, word, font, width):
            joined = f"{lines[-1]} {piece}" if lines else piece
            if lines and draw.textlength(joined, font=font) <= width:
                lines[-1] = joined
            else:
                lines.append(piece)
    return lines


def _pieces(draw: Any, word: str, font: Any, width: int) -> list[str]:
    """A word cut into pieces no wider than `width` (at least one character each)."""
    pieces = []
    while word:
        n = len(word)
        while n > 1 and draw.textlength(word[:n], font=font) > width:
            n -= 1
        pieces.append(word[:n])
        word = word[n:]
    return pieces


def _block(draw: Any, lines: list[str], font: Any, spacing: int) -> int:
    """Height of a block of wrapped lines."""
    if not lines:
        return 0
    ascent, descent = font.getmetrics()
    return len(lines) * (ascent + descent) + (len(lines) - 1) * spacing


def annotate(grid: Any, cell: tuple[int, int], columns: list[str], rows: list[str]) -> Any:
    """`grid` (cells of size `cell`) with column labels on top and row labels on the left; a new image."""
    from PIL import Image, ImageDraw

    size = font_size(*cell)
    font, spacing = _font(size), size // 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = cell[0] * 3 // 4 if any(rows) else 0
    col_lines = [wrap(measure, text, font, cell[0] - spacing) for text in columns]
    row_lines = [wrap(measure, text, font, max(1, pad_left - spacing)) for text in rows]
    pad_top = max((_block(measure, lines, font, spacing) for lines in col_lines), default=0) + spacing * 2
    width, height = grid.width + pad_left, grid.height + pad_top
    check_pixels(width, height)
    out = Image.new("RGB", (width, height), "white")
    out.paste(grid, (pad_left, pad_top))
    draw = ImageDraw.Draw(out)
    line_h = sum(font.getmetrics())
    for n, lines in enumerate(col_lines):
        x = pad_left + cell[0] * n + cell[0] / 2
        y = (pad_top - _block(measure, lines, font, spacing)) / 2
        for k, line in enumerate(lines):
            draw.text((x, y + k * (line_h + spacing)), line, font=font, fill=BLACK, anchor="ma")
    for n, lines in enumerate(row_lines):
        x = pad_left / 2
        y = pad_top + cell[1] * n + (cell[1] - _block(measure, lines, font, spacing)) / 2
        for k, line in enumerate(lines):
            draw.text((x, y + k * (line_h + spacing)), line, font=font, fill=BLACK, anchor="ma")
    return out


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_GRID_PIXELS:
        raise RuntimeFailure(f"the grid would be {width}x{height}, over the {MAX_GRID_PIXELS:,} pixel limit; "
                             "plot fewer or smaller cells (the cell images are written)")


def cell_grid(cells: list[Path | None], columns: int, size: tuple[int, int], x_labels: list[str],
              y_labels: list[str], legend: bool = True) -> Any:
    """The cells (row by row; None = a failed cell, drawn black) in a labelled grid."""
    from PIL import Image

    scale = cell_scale(size)
    cell = (size[0] * scale, size[1] * scale)
    rows = math.ceil(len(cells) / columns)
    check_pixels(columns * cell[0], rows * cell[1])
    grid = Image.new("RGB", (columns * cell[0], rows * cell[1]), "white")
    for n, path in enumerate(cells):
        at = ((n % columns) * cell[0], (n // columns) * cell[1])
        if path is None:  # a failed cell: black, as the WebUI draws it
            grid.paste((0, 0, 0), (*at, at[0] + cell[0], at[1] + cell[1]))
            continue
        with Image.open(path) as im:
            shown = im.convert("RGB")
            if shown.size != size:  # a cell of another size (a Width/Height axis): fitted, centred
                shown.thumbnail(size)
            if scale > 1:
                shown = shown.resize((shown.width * scale, shown.height * scale), Image.Resampling.NEAREST)
        grid.paste(shown, (at[0] + (cell[0] - shown.width) // 2, at[1] + (cell[1] - shown.height) // 2))
    return annotate(grid, cell, x_labels, y_labels) if legend else grid


def combined_grid(grids: list[Path], z_labels: list[str], legend: bool = True) -> Any:
    """The Z grids side by side with their Z labels on top (the WebUI's main grid)."""
    from PIL import Image

    sizes = []
    for path in grids:
        with Image.open(path) as im:
            sizes.append(im.size)
    cell = (max(w for w, _ in sizes), max(h for _, h in sizes))
    check_pixels(cell[0] * len(grids), cell[1])
    row = Image.new("RGB", (cell[0] * len(grids), cell[1]), "white")
    for n, path in enumerate(grids):
        with Image.open(path) as im:
            row.paste(im.convert("RGB"), (n * cell[0], 0))
    return annotate(row, cell, z_labels, [""]) if legend else row


def save_grid(image: Any, folder: Path, name: str, infotext: str, replace_existing: bool) -> Path:
    """Write a grid PNG with its infotext: a new name beside an existing file, or (resume) in its place."""
    from sdcli.core.metadata import png_info
    from sdcli.core.output import write_atomic

    def save(path: Any) -> None:
        image.save(path, format="PNG", pnginfo=png_info(infotext))

    if not replace_existing or not (folder / f"{name}.png").exists():
        return write_atomic(folder, name, ".png", save)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".sdcli-{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / f"{name}.png")  # the grid is redrawn from the cells, which are never replaced
    finally:
        Path(tmp).unlink(missing_ok=True)
    return folder / f"{name}.png"
