"""X/Y/Z plot grids (Pillow only): labels readable from 32 px to 1024 px cells, cells in place, limits."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdcli.batch.grid import _font
from sdcli.batch.plotgrid import MIN_FONT, cell_grid, cell_scale, font_size, wrap
from sdcli.errors import RuntimeFailure


def _cells(tmp_path, size, n=4):
    paths = []
    for k in range(n):
        path = tmp_path / f"{size}-{k}.png"
        Image.new("RGB", (size, size), (40 * k + 30, 200, 90)).save(path)
        paths.append(path)
    return paths


def _text_rows(band):
    """Rows of a label band holding dark (text) pixels."""
    return int((np.asarray(band.convert("L")) < 100).any(axis=1).sum())


@pytest.mark.parametrize("size", [32, 64, 512, 1024])
def test_labels_scale_with_the_cells_and_stay_readable(tmp_path, size):
    grid = cell_grid(_cells(tmp_path, size), 2, (size, size), ["Sampler: Euler a", "DPM++ 2M Karras"],
                     ["CFG Scale: 4.0", "CFG Scale: 10.0"])
    scale = cell_scale((size, size))
    cell = size * scale
    assert scale == {32: 4, 64: 2, 512: 1, 1024: 1}[size]
    left, top = cell * 3 // 4, grid.height - 2 * cell
    assert grid.width == left + 2 * cell
    header = grid.crop((left, 0, grid.width, top))
    text_height = _text_rows(header)
    font = font_size(cell, cell)
    assert font == max(MIN_FONT, 2 * cell // 25)
    assert text_height >= 0.6 * font, "the header holds text of about the font size"
    assert _text_rows(grid.crop((0, top, left, grid.height))) >= 0.6 * font, "row labels on the left"
    assert top < cell, "the header band is smaller than a cell"
    # The cells are in place, shown at the whole-number scale.
    shown = np.asarray(grid)[top:top + cell:scale, left + cell:left + 2 * cell:scale]
    assert (shown == np.asarray(Image.open(tmp_path / f"{size}-1.png"))).all()


def test_long_labels_wrap_and_long_words_are_cut_to_the_width():
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(12)
    lines = wrap(draw, "a photo of an extraordinarilylongwordwithoutspaces cat", font, 60)
    assert len(lines) > 3 and all(draw.textlength(line, font=font) <= 60 for line in lines)
    assert "".join(lines).replace(" ", "") == "aphotoofanextraordinarilylongwordwithoutspacescat"


def test_missing_cells_are_black_and_a_huge_grid_is_refused(tmp_path):
    paths = _cells(tmp_path, 32, n=2)
    grid = cell_grid([paths[0], None, paths[1], None], 2, (32, 32), ["a", "b"], ["c", "d"], legend=False)
    assert grid.size == (256, 256) and not np.asarray(grid)[:128, 128:].any()
    with pytest.raises(RuntimeFailure, match="over the 100,000,000 pixel limit"):
        cell_grid([None] * 200, 20, (1024, 1024), [""] * 20, [""] * 10)


def test_cells_of_other_sizes_are_centred_in_the_largest(tmp_path):
    small, wide = tmp_path / "small.png", tmp_path / "wide.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(small)
    Image.new("RGB", (48, 32), (200, 20, 30)).save(wide)
    grid = np.asarray(cell_grid([small, wide], 2, (48, 32), ["", ""], [""], legend=False))
    assert grid.shape == (128, 2 * 192, 3)  # 48x32 shown 4x
    assert (grid[:, 32:160] == (10, 20, 30)).all() and (grid[:, :32] == 255).all() and (grid[:, 160:192] == 255).all()
    assert (grid[:, 192:] == (200, 20, 30)).all()
