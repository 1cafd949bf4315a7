import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdcli.errors import UsageError
from sdcli.io.images import (
    crop_box,
    fill_masked,
    open_image,
    open_mask,
    outpaint_canvas,
    resize,
    round8,
    stretch_edges,
)


def px(image):
    return np.asarray(image, dtype=np.int16)


def save(tmp_path, image, name="in.png", **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def blocks(size=(40, 32)):
    """An RGB test picture with distinct colours in each quarter."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 200, 30), (size[0] // 2, 0, size[0], size[1] // 2))
    image.paste((30, 30, 200), (0, size[1] // 2, size[0] // 2, size[1]))
    return image


# -- Loading untrusted files ----------------------------------------------------------------

@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_png_jpeg_webp_open_as_rgb(tmp_path, fmt, suffix):
    path = save(tmp_path, blocks(), f"in.{suffix}", format=fmt, quality=95)
    image = open_image(path, "--image")
    assert image.mode == "RGB" and image.size == (40, 32)
    assert np.abs(px(image)[4, 4] - (200, 30, 30)).max() < 12


def test_rgba_is_flattened_onto_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    rgba.paste((10, 20, 30, 0), (0, 0, 4, 8))
    image = open_image(save(tmp_path, rgba), "--image")
    assert tuple(px(image)[0, 0]) == (255, 255, 255) and tuple(px(image)[0, 7]) == (10, 20, 30)


def test_greyscale_palette_and_16_bit_convert_correctly(tmp_path):
    grey = open_image(save(tmp_path, Image.new("L", (8, 8), 77), "l.png"), "--image")
    assert tuple(px(grey)[3, 3]) == (77, 77, 77)
    palette = blocks().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert np.array_equal(px(open_image(save(tmp_path, palette, "p.png"), "--image")), px(palette.convert("RGB")))
    transparent = Image.new("P", (8, 8), 1)
    transparent.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    transparent.info["transparency"] = 0
    transparent.paste(0, (0, 0, 8, 4))
    flat = px(open_image(save(tmp_path, transparent, "pt.png", transparency=0), "--image"))
    assert tuple(flat[0, 0]) == (255, 255, 255) and tuple(flat[7, 0]) == (250, 10, 10)
    deep = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert tuple(px(open_image(save(tmp_path, deep, "16.png"), "--image"))[0, 0]) == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (16, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 4, 8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    loaded = open_image(save(tmp_path, image, "r.jpg", exif=exif, quality=95), "--image")
    assert loaded.size == (8, 16)


def _bomb_png(path, width, height):
    """A valid PNG header claiming a huge size (the pixel data is never reached)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
                     + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.png", "no such file"),
    (lambda p: p, "is not a file"),
    (lambda p: (p / "t.png").write_text("not an image") and p / "t.png", "is not a PNG, JPEG or WebP image"),
    (lambda p: Image.new("RGB", (8, 8)).save(p / "i.gif") or p / "i.gif", "is not a PNG, JPEG or WebP image"),
    (lambda p: Image.new("RGB", (8, 8)).save(p / "i.bmp") or p / "i.bmp", "is not a PNG, JPEG or WebP image"),
    (lambda p: _bomb_png(p / "bomb.png", 10000, 10000), "is 10000x10000 pixels; the limit is"),
    (lambda p: _bomb_png(p / "huge.png", 200000, 200000), "too large to open safely"),
])
def test_bad_files_are_usage_errors_naming_flag_and_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UsageError, match=message) as info:
        open_image(path, "--image")
    assert str(info.value).startswith(f"--image: {path}")


def test_truncated_file_is_corrupt(tmp_path):
    path = save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UsageError, match=r"^--image: .* is corrupt or unreadable"):
        open_image(path, "--image")


# -- Masks -----------------------------------------------------------------------------------

def test_mask_white_repaints_invert_flips(tmp_path):
    mask = Image.new("L", (16, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    path = save(tmp_path, mask.convert("RGB"), "m.png")
    assert open_mask(path, (16, 8), invert=False, fit=False).getpixel((0, 0)) == 255
    inverted = open_mask(path, (16, 8), invert=True, fit=False)
    assert inverted.getpixel((0, 0)) == 0 and inverted.getpixel((10, 0)) == 255


def test_mask_size_mismatch_is_an_error_unless_resize_mask(tmp_path):
    path = save(tmp_path, Image.new("L", (8, 8), 255), "m.png")
    with pytest.raises(UsageError, match=r"--mask: .*m.png is 8x8 but the image is 16x16; .* --resize-mask"):
        open_mask(path, (16, 16), invert=False, fit=False)
    assert open_mask(path, (16, 16), invert=False, fit=True).size == (16, 16)


def test_all_black_mask_is_refused(tmp_path):
    black = save(tmp_path, Image.new("L", (8, 8), 0), "black.png")
    with pytest.raises(UsageError, match="black.png is all black: nothing to repaint"):
        open_mask(black, (8, 8), invert=False, fit=False)
    white = save(tmp_path, Image.new("L", (8, 8), 255), "white.png")
    with pytest.raises(UsageError, match="all black once inverted"):
        open_mask(white, (8, 8), invert=True, fit=False)


def test_transparent_mask_uses_its_alpha(tmp_path):
    mask = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (0, 0, 2, 8))  # opaque black strokes = repaint
    loaded = open_mask(save(tmp_path, mask, "a.png"), (8, 8), invert=False, fit=False)
    assert loaded.getpixel((0, 0)) == 255 and loaded.getpixel((5, 5)) == 0


# -- Geometry and fills ------------------------------------------------------------------------

def test_round8():
    assert [round8(v) for v in (1, 52, 60, 64, 67, 68)] == [8, 56, 64, 64, 64, 72]


def test_stretch_edges_repeats_border_pixels():
    canvas = px(stretch_edges(blocks(), (60, 48), (8, 4)))
    original = px(blocks())
    assert np.array_equal(canvas[4:36, 8:48], original)
    assert np.array_equal(canvas[4:36, 0], original[:, 0]) and np.array_equal(canvas[4:36, 59], original[:, -1])
    assert np.array_equal(canvas[0], canvas[4]) and np.array_equal(canvas[47], canvas[35])


@pytest.mark.parametrize("mode", ["just", "crop", "fill"])
def test_resize_modes_reach_the_size_and_leave_a_matching_size_alone(mode):
    image = blocks((40, 32))
    assert resize(image, (64, 32), mode).size == (64, 32)
    assert resize(image, (40, 32), mode) is image


def test_resize_crop_keeps_aspect_and_fill_pads_with_edges():
    wide = blocks((80, 40))
    cropped = px(resize(wide, (40, 40), "crop"))  # centre 40x40 of the 80x40 input
    assert np.array_equal(cropped[5, 5], (200, 30, 30)) and np.array_equal(cropped[5, 35], (30, 200, 30))
    filled = px(resize(wide, (80, 80), "fill"))  # 80x40 in the middle, edges stretched up and down
    assert np.array_equal(filled[0], filled[20]) and np.array_equal(filled[79], filled[59])
    assert np.array_equal(filled[20:60], px(wide))


def test_crop_box_grows_by_padding_matches_aspect_and_stays_inside():
    mask = Image.new("L", (100, 80), 0)
    mask.paste(255, (40, 30, 50, 40))
    assert crop_box(mask, 5, (64, 64)) == (35, 25, 55, 45)
    left, top, right, bottom = crop_box(mask, 5, (128, 64))  # wide generation size: wide crop
    assert (right - left, bottom - top) == (40, 20) and left <= 35 and right >= 55
    assert crop_box(mask, 500, (64, 64)) == (0, 0, 100, 80)
    corner = Image.new("L", (100, 80), 0)
    corner.paste(255, (0, 0, 4, 4))
    assert crop_box(corner, 8, (64, 64)) == (0, 0, 12, 12)


def test_fill_masked_changes_only_the_mask_with_surrounding_colours():
    image = Image.new("RGB", (32, 32), (20, 120, 220))
    image.paste((255, 255, 0), (12, 12, 20, 20))  # a yellow square to paint over
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (10, 10, 22, 22))
    filled = px(fill_masked(image, mask))
    outside = px(mask) == 0
    assert np.array_equal(filled[outside], px(image)[outside])
    assert np.abs(filled[16, 16] - (20, 120, 220)).max() <= 2, "filled from the blue around it"


@pytest.mark.parametrize("fill", ["edge", "noise", "blur"])
def test_outpaint_canvas_keeps_original_and_rounds_to_8(fill):
    image = blocks((42, 30))
    canvas, mask, (x, y) = outpaint_canvas(image, 16, 0, 5, 0, fill)
    assert canvas.size == (64, 40) and canvas.width % 8 == 0 and canvas.height % 8 == 0
    assert (x, y) == (22, 10), "rounding grows the sides being expanded"
    assert np.array_equal(px(canvas)[y:y + 30, x:x + 42], px(image))
    hard = px(mask)
    assert (hard[y:y + 30, x:x + 42] == 0).all() and hard.sum() == 255 * (64 * 40 - 42 * 30)
    new = px(canvas)[:, :x]
    if fill == "edge":
        assert np.array_equal(new[y:y + 30, 0], px(image)[:, 0])
    elif fill == "noise":
        assert new.std() > 40
    else:
        assert new.std() < px(image).std()


def test_outpaint_rounding_goes_right_and_down_unless_only_left_or_up():
    image = blocks((42, 30))
    assert outpaint_canvas(image, 0, 0, 0, 8, "edge")[2] == (0, 0)  # width 42 -> 48 on the right
    assert outpaint_canvas(image, 0, 0, 0, 8, "edge")[0].size == (48, 40)
    assert outpaint_canvas(image, 3, 0, 0, 8, "edge")[2] == (6, 0)  # 45 -> 48 on the left
