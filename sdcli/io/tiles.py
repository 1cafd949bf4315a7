"""Overlapping tiles of an image and their blend back into one, as the WebUI's SD upscale script does them
(its images.split_grid / combine_grid): tiles of the request's size spread evenly so that neighbours overlap
by at least `overlap` pixels, the last row and column flush with the edges; put back left to right and top
to bottom, each new tile faded in over the first `overlap` pixels of its left (then top) edge by a linear
ramp of 8-bit weights. Imports PIL and numpy inside functions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TileGrid:
    """Where each tile sits: rows of (y, [x, ...]) for tiles of tile_w x tile_h in an image_w x image_h image."""

    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int
    rows: list[tuple[int, list[int]]] = field(default_factory=list)
    source: Any = None  # the image the tiles are cut from

    def images(self) -> list[Any]:
        """The tiles, row by row, cut from the source image."""
        return [self.source.crop((x, y, x + self.tile_w, y + self.tile_h)) for y, xs in self.rows for x in xs]


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one side: evenly spread, the last one flush with the far edge."""
    count = max(1, math.ceil((size - overlap) / (tile - overlap)))
    step = (size - tile) / (count - 1) if count > 1 else 0
    offsets = []
    for i in range(count):
        at = int(i * step)
        offsets.append(size - tile if at + tile >= size else at)
    return offsets


def split_tiles(image: Any, tile_w: int, tile_h: int, overlap: int) -> TileGrid:
    """The grid of `image` cut into tile_w x tile_h tiles overlapping by at least `overlap`."""
    grid = TileGrid(tile_w, tile_h, image.width, image.height, overlap, source=image)
    xs = _starts(image.width, tile_w, overlap)
    grid.rows = [(y, list(xs)) for y in _starts(image.height, tile_h, overlap)]
    return grid


def _ramp(length: int, across: int, horizontal: bool) -> Any:
    """An 8-bit mask rising linearly over `length` pixels (0 at the seam's start), `across` pixels wide."""
    import numpy as np
    from PIL import Image

    steps = (np.arange(length, dtype=np.float32) * 255 / length).astype(np.uint8)
    array = np.tile(steps, (across, 1)) if horizontal else np.tile(steps[:, None], (1, across))
    return Image.fromarray(array, "L")


def combine_tiles(grid: TileGrid, tiles: list[Any]) -> Any:
    """The processed `tiles` (in grid order) blended back into one image of the grid's size."""
    from PIL import Image

    out = Image.new("RGB", (grid.image_w, grid.image_h))
    seam_x = _ramp(grid.overlap, grid.tile_h, True) if grid.overlap else None
    seam_y = _ramp(grid.overlap, grid.image_w, False) if grid.overlap else None
    at = 0
    for y, xs in grid.rows:
        row = Image.new("RGB", (grid.image_w, grid.tile_h))
        for x in xs:
            tile = tiles[at].convert("RGB")
            at += 1
            if x == 0 or seam_x is None:
                row.paste(tile, (x, 0))
                continue
            row.paste(tile.crop((0, 0, grid.overlap, grid.tile_h)), (x, 0), mask=seam_x)
            row.paste(tile.crop((grid.overlap, 0, grid.tile_w, grid.tile_h)), (x + grid.overlap, 0))
        if y == 0 or seam_y is None:
            out.paste(row, (0, y))
            continue
        out.paste(row.crop((0, 0, grid.image_w, grid.overlap)), (0, y), mask=seam_y)
        out.paste(row.crop((0, grid.overlap, grid.image_w, grid.tile_h)), (0, y + grid.overlap))
    return out
