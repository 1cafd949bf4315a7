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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.batch.grid import MAX_GRID_PIXELS, _font
from sdcli.errors import RuntimeFailure

if TYPE_CHECKING:
    from sdcli.batch.xyz import Plot

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


def _block(lines: list[str], font: Any, spacing: int) -> int:
    """Height of a block of wrapped lines."""
    if not lines:
        return 0
    ascent, descent = font.getmetrics()
    return len(lines) * (ascent + descent) + (len(lines) - 1) * spacing


@dataclass
class Labels:
    """The label bands of a grid of `cell`-sized cells: wrapped text, font, and the band sizes."""

    cell: tuple[int, int]
    font: Any = None
    spacing: int = 0
    left: int = 0  # width of the row-label band
    top: int = 0  # height of the column-label band
    columns: list[list[str]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def layout(cell: tuple[int, int], columns: list[str], rows: list[str], legend: bool = True) -> Labels:
    """Wrap the labels and size the bands as the WebUI does (the left band 3/4 of a cell, if any row label)."""
    from PIL import Image, ImageDraw

    if not legend:
        return Labels(cell)
    size = font_size(*cell)
    font, spacing = _font(size), size // 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = cell[0] * 3 // 4 if any(rows) else 0
    col_lines = [wrap(measure, text, font, cell[0] - spacing) for text in columns]
    row_lines = [wrap(measure, text, font, max(1, left - spacing)) for text in rows]
    top = max((_block(lines, font, spacing) for lines in col_lines), default=0) + spacing * 2
    return Labels(cell, font, spacing, left, top, col_lines, row_lines)


def canvas(labels: Labels, columns: int, rows: int) -> Any:
    """A white image for `columns` x `rows` cells and the label bands (refused over MAX_GRID_PIXELS)."""
    from PIL import Image

    width, height = labels.left + columns * labels.cell[0], labels.top + rows * labels.cell[1]
    if width * height > MAX_GRID_PIXELS:
        raise RuntimeFailure(f"the grid would be {width}x{height}, over the {MAX_GRID_PIXELS:,} pixel limit; "
                             "plot fewer or smaller cells (the cell images are written)")
    return Image.new("RGB", (width, height), "white")


def draw_labels(image: Any, labels: Labels) -> None:
    """Column labels centred over their cells, row labels centred in the left band beside theirs."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    (width, height), font, spacing = labels.cell, labels.font, labels.spacing
    line_h = sum(font.getmetrics()) if font else 0
    for n, lines in enumerate(labels.columns):
        x, y = labels.left + width * n + width / 2, (labels.top - _block(lines, font, spacing)) / 2
        for k, line in enumerate(lines):
            draw.text((x, y + k * (line_h + spacing)), line, font=font, fill=BLACK, anchor="ma")
    for n, lines in enumerate(labels.rows):
        x, y = labels.left / 2, labels.top + height * n + (height - _block(lines, font, spacing)) / 2
        for k, line in enumerate(lines):
            draw.text((x, y + k * (line_h + spacing)), line, font=font, fill=BLACK, anchor="ma")


def cell_grid(cells: list[Path | None], columns: int, size: tuple[int, int], x_labels: list[str],
              y_labels: list[str], legend: bool = True) -> Any:
    """The cells (row by row; None = a failed cell, drawn black) in a labelled grid.

    The grid is allocated once, labels included; the cells are read from disk one at a time.
    """
    from PIL import Image

    scale = cell_scale(size)
    cell = (size[0] * scale, size[1] * scale)
    labels = layout(cell, x_labels, y_labels, legend)
    grid = canvas(labels, columns, math.ceil(len(cells) / columns))
    for n, path in enumerate(cells):
        at = (labels.left + (n % columns) * cell[0], labels.top + (n // columns) * cell[1])
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
    draw_labels(grid, labels)
    return grid


def combined_grid(grids: list[Path], z_labels: list[str], legend: bool = True) -> Any:
    """The Z grids side by side with their Z labels on top (the WebUI's main grid), read one at a time."""
    from PIL import Image

    sizes = []
    for path in grids:
        with Image.open(path) as im:
            sizes.append(im.size)
    labels = layout((max(w for w, _ in sizes), max(h for _, h in sizes)), z_labels, [""], legend)
    row = canvas(labels, len(grids), 1)
    for n, path in enumerate(grids):
        with Image.open(path) as im:
            row.paste(im.convert("RGB"), (n * labels.cell[0], labels.top))
    draw_labels(row, labels)
    return row


def save_grid(image: Any, folder: Path, name: str, infotext: str, replace_existing: bool) -> Path:
    """Write a grid PNG with its infotext: a new name beside an existing file, or (resume) in its place."""
    from sdcli.io.metadata import png_info
    from sdcli.io.output import write_atomic

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


def grid_infotext(cell: str | None, plot: Plot, combined: bool) -> str:
    """A grid's infotext: its first cell's (`cell`) with the plot's keys (plot_params) where the WebUI's X/Y/Z plot
    writes them, among its extra generation params (before Version); `combined`: the main grid's (Z keys too)."""
    from sdcli.batch.xyz import plot_params
    from sdcli.io.metadata import with_params

    return with_params(cell or "", plot_params(plot, combined))
