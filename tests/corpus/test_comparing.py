"""The corpus's tolerant image comparison: a level on a pixel passes, real changes fail."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

from tests.corpus.comparing import compare
from tests.corpus.hashing import digest, image_print, prints_agree

ROOT = "/r"


def _png(pixels: np.ndarray, text: str = "Steps: 3") -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _pixels() -> np.ndarray:
    y, x = np.mgrid[0:32, 0:32]
    return np.stack([x * 7, y * 7, (x * y) % 256], axis=-1).astype(np.uint8)


def _record(data: bytes) -> dict:
    return {"id": "c", "command": "sdcli x", "exit_code": 0, "files": {"a.png": digest(data, "a.png", ROOT)},
            "images": {"a.png": image_print(data, ROOT)}}


def test_a_level_on_one_pixel_agrees_and_real_changes_do_not():
    base = _pixels()
    nudged, shifted, brighter = base.copy(), base.copy(), base.copy()
    nudged[5, 5, 0] += 1
    shifted[:8, :8] = 255 - shifted[:8, :8]
    brighter[...] = np.minimum(base.astype(int) + 3, 255)
    reference = image_print(_png(base), ROOT)
    assert prints_agree(reference, image_print(_png(nudged), ROOT))
    assert not prints_agree(reference, image_print(_png(shifted), ROOT))
    assert not prints_agree(reference, image_print(_png(brighter), ROOT))
    assert not prints_agree(reference, image_print(_png(base, "Steps: 4"), ROOT))  # metadata is exact
    assert image_print(b"not an image", ROOT) is None and not prints_agree(reference, None)


def test_compare_lists_close_images_apart_from_problems():
    base = _pixels()
    nudged, changed = base.copy(), base.copy()
    nudged[0, 0, 2] += 1
    changed[10:20, 10:20] = 0
    expected = {"commands": [_record(_png(base))]}
    problems, close = compare(expected, [_record(_png(nudged))])
    assert (problems, close) == ([], ["c/a.png"])
    problems, close = compare(expected, [_record(_png(changed))])
    assert close == [] and len(problems) == 1 and "file a.png differs" in problems[0]
    problems, close = compare(expected, [_record(_png(base))])
    assert (problems, close) == ([], [])
