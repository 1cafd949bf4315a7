"""Contact sheets: pixel limit before allocating, images streamed, damaged manifests named."""

import gc
import json
import weakref

import pytest
from PIL import Image

from sdcli.batch import grid
from sdcli.batch.manifest import ManifestError
from sdcli.errors import UsageError


def batch_folder(tmp_path, n, **extra):
    lines = [{"type": "batch", "digest": "d", "base_seed": 0}]
    for i in range(n):
        path = tmp_path / f"{i:05d}-{i}.png"
        Image.new("RGB", (32, 32), (i * 20 % 256, 0, 0)).save(path)
        lines.append({"type": "item", "item": i, "status": "done", "seed": i, "path": str(path), "prompt": f"p{i}",
                      **extra})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return manifest


def test_images_are_streamed_one_at_a_time(tmp_path, monkeypatch):
    manifest = batch_folder(tmp_path, 6)
    real_open, opened, most = Image.open, [], [0]

    def tracking_open(*args, **kwargs):
        im = real_open(*args, **kwargs)
        opened.append(weakref.ref(im))  # weak: the test itself must not keep images alive
        most[0] = max(most[0], sum(getattr(o(), "fp", None) is not None for o in opened))
        return im

    def live_inputs() -> int:
        """Decoded 32x32 input images still in memory (the sheet and its 128 px cells do not count)."""
        gc.collect()
        return sum(isinstance(o, Image.Image) and o.size == (32, 32) and getattr(o, "_im", None) is not None
                   for o in gc.get_objects())

    held = []
    real_save = Image.Image.save

    def save(self, *args, **kwargs):
        held.append(live_inputs())  # when the sheet is written, have the inputs been let go?
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image, "open", tracking_open)
    monkeypatch.setattr(Image.Image, "save", save)
    out = grid.write_grid(manifest)
    assert len(opened) == 12 and most[0] == 1  # each image: its header, then its pixels; one file open at a time
    assert all(getattr(o(), "fp", None) is None for o in opened)
    assert held[-1] <= 1, f"{held[-1]} of 6 input images still held while writing the sheet"
    with real_open(out) as sheet:
        assert sheet.size == (3 * (128 + 4) + 4, 2 * (128 + 2 * 16 + 4 + 4) + 4)


def test_sheets_over_the_pixel_limit_are_refused_before_allocating(tmp_path, monkeypatch):
    manifest = batch_folder(tmp_path, 4)
    monkeypatch.setattr(grid, "MAX_GRID_PIXELS", 90_000)
    monkeypatch.setattr(Image, "new", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(UsageError, match=r"^grid: 4 images make a 268x340 sheet, over the 90,000 pixel limit"):
        grid.write_grid(manifest)
    assert not (tmp_path / "grid.png").exists()


def test_done_items_without_path_or_seed_are_named(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"type": "batch", "digest": "d", "base_seed": 0}) + "\n"
                        + json.dumps({"type": "item", "item": 0, "status": "done"}) + "\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: done item 0 lacks its path or seed"):
        grid.write_grid(manifest)
