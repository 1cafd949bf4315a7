"""SD upscale's tiles (io.tiles) against the WebUI's split_grid/combine_grid (tests/reference/webui_tiles_ref.py)."""

import numpy as np
import pytest
from PIL import Image

from sdcli.io.tiles import combine_tiles, split_tiles
from tests.reference.webui_tiles_ref import combine_grid, split_grid


def noise(width, height, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size, tile, overlap", [((64, 64), (32, 32), 8), ((100, 72), (40, 32), 12),
                                                 ((32, 32), (32, 32), 8), ((96, 40), (32, 40), 0)])
def test_tiles_and_blend_match_the_webui(size, tile, overlap):
    image = noise(*size, seed=1)
    ours = split_tiles(image, *tile, overlap)
    theirs = split_grid(image, *tile, overlap)
    assert [(y, xs) for y, xs in ours.rows] == [(y, [x for x, _, _ in cells]) for y, _, cells in theirs]
    # processed tiles: fresh noise each, so every seam's blend shows
    processed = [noise(*tile, seed=10 + k) for k in range(len(ours.images()))]
    at = iter(processed)
    for _, _, cells in theirs:
        for cell in cells:
            cell[2] = next(at)
    if overlap:
        want = combine_grid(theirs, tile[1], size[0], size[1], overlap)
        assert np.array_equal(np.asarray(combine_tiles(ours, processed)), np.asarray(want))


def test_the_parity_check_can_fail():
    image = noise(64, 64, seed=2)
    ours = split_tiles(image, 32, 32, 8)
    processed = [noise(32, 32, seed=20 + k) for k in range(len(ours.images()))]
    theirs = split_grid(image, 32, 32, 8)
    at = iter(processed)
    for _, _, cells in theirs:
        for cell in cells:
            cell[2] = next(at)
    other = combine_grid(theirs, 32, 64, 64, 12)  # another overlap: another blend
    assert not np.array_equal(np.asarray(combine_tiles(ours, processed)), np.asarray(other))
    assert split_tiles(image, 32, 32, 24).rows != ours.rows  # more overlap: more tiles
