"""Images in are untrusted: each bad file is one line naming it, exit 2, nothing written."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.images import FAST, pixels, pngs, write_inputs


def huge_png(path, side):
    """A real PNG header claiming side x side pixels; no pixel data is ever decoded."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
                     + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def truncated(path):
    write_inputs(path.parent)
    data = (path.parent / "in.png").read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {  # name -> (how to make it, what the error says after the path)
    "missing.png": (lambda p: None, ": no such file"),
    "notes.png": (lambda p: p.write_text("hello"), " is not a PNG, JPEG or WebP image"),
    "anim.gif": (lambda p: Image.new("RGB", (8, 8)).save(p), " is not a PNG, JPEG or WebP image"),
    "pic.tiff": (lambda p: Image.new("RGB", (8, 8)).save(p), " is not a PNG, JPEG or WebP image"),
    "cut.png": (truncated, " is corrupt or unreadable"),
    "bomb.png": (lambda p: huge_png(p, 12000), " is 12000x12000 pixels; the limit is 67108864 pixels"),
    "giant.png": (lambda p: huge_png(p, 100000), " is too large to open safely"),
}
COMMANDS = {
    "img2img": lambda image, mask: ("img2img", "-i", image),
    "inpaint-image": lambda image, mask: ("inpaint", "-i", image, "--mask", mask),
    "inpaint-mask": lambda image, mask: ("inpaint", "-i", mask, "--mask", image),
    "outpaint": lambda image, mask: ("outpaint", "-i", image, "--left", "8"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_image_files(cli, tiny_model, tmp_path, command, name):
    _, good = write_inputs(tmp_path)
    bad = tmp_path / name
    make, message = BAD_FILES[name]
    make(bad)
    args = COMMANDS[command](bad, good)
    result = cli(*args, "-m", tiny_model, *FAST, "-o", tmp_path / "o", "x")
    flag = "--mask" if command == "inpaint-mask" else "--image"
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {flag}: {bad}{message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists(), "checked before the output folder or the model"


@pytest.mark.parametrize("invert", [False, True])
def test_nothing_to_repaint(cli, tiny_model, tmp_path, invert):
    image, _ = write_inputs(tmp_path)
    Image.new("L", (48, 40), 255 if invert else 0).save(tmp_path / "flat.png")
    result = cli("inpaint", "-i", image, "--mask", tmp_path / "flat.png", *(["--invert-mask"] if invert else []),
                 "-m", tiny_model, *FAST, "-o", tmp_path / "o", "x")
    assert result.exit_code == 2 and pngs(tmp_path / "o") == []
    assert result.stderr.startswith(f"error: --mask: {tmp_path / 'flat.png'} is all black"), result.stderr


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16"])
def test_other_image_modes_are_converted(cli, tiny_model, tmp_path, mode):
    source = Image.new("RGB", (40, 32), (200, 100, 50))
    if mode == "I;16":
        image = Image.fromarray(np.full((32, 40), 40000, dtype=np.uint16))
    elif mode in ("RGBA", "LA"):
        image = source.convert(mode)
        image.putalpha(Image.new("L", (40, 32), 0).point(lambda _: 0))  # fully transparent
    else:
        image = source.convert(mode)
    image.save(tmp_path / "in.png")
    mask = Image.new("L", (40, 32), 0)
    mask.paste(255, (0, 0, 8, 8))
    mask.save(tmp_path / "mask.png")
    result = cli("inpaint", "-i", tmp_path / "in.png", "--mask", tmp_path / "mask.png", "--mask-blur", "0",
                 "-m", tiny_model, *FAST, "-o", tmp_path / "o", "x")
    assert result.exit_code == 0, result.stderr
    expected = {"RGBA": (255, 255, 255), "LA": (255, 255, 255), "L": source.convert("L").getpixel((0, 0)),
                "P": source.convert("P").convert("RGB").getpixel((0, 0)), "I;16": 156}[mode]
    expected = (expected,) * 3 if isinstance(expected, int) else expected
    assert tuple(pixels(result.stdout.strip())[20, 30]) == expected
