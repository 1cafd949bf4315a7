"""The WebUI's SD upscale tiling (modules/images.py split_grid / combine_grid), transcribed independently for
parity tests; imports nothing from sdcli."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def split_grid(image, tile_w, tile_h, overlap):
    """[(y, h, [(x, w, tile), ...]), ...] as the WebUI cuts an image."""
    w, h = image.width, image.height
    cols = math.ceil((w - overlap) / (tile_w - overlap))
    rows = math.ceil((h - overlap) / (tile_h - overlap))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    tiles = []
    for row in range(rows):
        y = int(row * dy)
        if y + tile_h >= h:
            y = h - tile_h
        cells = []
        for col in range(cols):
            x = int(col * dx)
            if x + tile_w >= w:
                x = w - tile_w
            cells.append([x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))])
        tiles.append([y, tile_h, cells])
    return tiles


def combine_grid(tiles, tile_h, image_w, image_h, overlap):
    ramp = np.arange(overlap, dtype=np.float32) * 255 / overlap
    mask_w = Image.fromarray(ramp.reshape((1, overlap)).repeat(tile_h, axis=0).astype(np.uint8), "L")
    mask_h = Image.fromarray(ramp.reshape((overlap, 1)).repeat(image_w, axis=1).astype(np.uint8), "L")
    out = Image.new("RGB", (image_w, image_h))
    for y, h, cells in tiles:
        row = Image.new("RGB", (image_w, h))
        for x, w, tile in cells:
            if x == 0:
                row.paste(tile, (0, 0))
                continue
            row.paste(tile.crop((0, 0, overlap, h)), (x, 0), mask=mask_w)
            row.paste(tile.crop((overlap, 0, w, h)), (x + overlap, 0))
        if y == 0:
            out.paste(row, (0, 0))
            continue
        out.paste(row.crop((0, 0, row.width, overlap)), (0, y), mask=mask_h)
        out.paste(row.crop((0, overlap, row.width, h)), (0, y + overlap))
    return out
