import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext, read_infotext
from tests.images import FAST, pixels, write_inputs


@pytest.mark.parametrize("model", ["tiny_model", "tiny_inpaint_model"])
def test_inpaint_keeps_pixels_outside_the_mask_with_both_checkpoint_kinds(cli, tmp_path, request, model):
    image, mask = write_inputs(tmp_path)
    result = cli("inpaint", "-i", image, "--mask", mask, "--mask-blur", "0", "-m", request.getfixturevalue(model),
                 *FAST, "-o", tmp_path / "o", "--json", "a cat")
    assert result.exit_code == 0, result.stderr
    out, outside = pixels(json.loads(result.stdout)["path"]), pixels(mask)[..., 0] == 0
    assert np.array_equal(out[outside], pixels(image)[outside])
    assert not np.array_equal(out[~outside], pixels(image)[~outside])


def test_inpaint_infotext_records_the_webui_fields(cli, tiny_model, tmp_path):
    image, mask = write_inputs(tmp_path)
    result = cli("inpaint", "-i", image, "--mask", mask, "-m", tiny_model, *FAST, "--strength", "0.9",
                 "--inpaint-area", "masked", "--padding", "8", "--masked-content", "fill", "-W", "64", "-H", "64",
                 "-o", tmp_path / "o", "--json", "a cat")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert Image.open(record["path"]).size == (48, 40), "only-masked output keeps the input's size"
    assert (record["width"], record["height"]) == (64, 64), "the generation size, as in the infotext"
    params = parse_infotext(read_infotext(record["path"]))[2]
    assert {k: params[k] for k in ("Denoising strength", "Mask blur", "Inpaint area", "Masked area padding",
                                   "Masked content", "Size")} == {
        "Denoising strength": "0.9", "Mask blur": "4", "Inpaint area": "Only masked", "Masked area padding": "8",
        "Masked content": "fill", "Size": "64x64"}


def test_inpaint_resize_mask_and_invert(cli, tiny_model, tmp_path):
    image, _ = write_inputs(tmp_path)
    small = Image.new("L", (24, 20), 255)
    small.paste(0, (0, 0, 12, 20))  # left half black: keep it; right half white
    small.save(tmp_path / "small.png")
    args = ("inpaint", "-i", image, "--mask", tmp_path / "small.png", "-m", tiny_model, *FAST, "--mask-blur", "0")
    refused = cli(*args, "-o", tmp_path / "o", "x")
    assert refused.exit_code == 2 and refused.stderr.startswith(
        f"error: --mask: {tmp_path / 'small.png'} is 24x20 but the image is 48x40; use a mask of the same size "
        "or pass --resize-mask")
    result = cli(*args, "--resize-mask", "--invert-mask", "-o", tmp_path / "o", "x")
    assert result.exit_code == 0, result.stderr
    out = pixels(result.stdout.strip())
    # The 2x bilinear resize softens the edge over columns 23-24.
    assert np.array_equal(out[:, 25:], pixels(image)[:, 25:]), "inverted: the white half is kept"
    assert not np.array_equal(out[:, :23], pixels(image)[:, :23])


@pytest.mark.parametrize("command", ["inpaint", "outpaint"])
def test_replay_makes_the_same_pixels(cli, tiny_model, tmp_path, command, monkeypatch):
    image, mask = write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths on the command line; the record keeps absolute ones
    args = ("--mask", "mask.png", "--masked-content", "latent-nothing") if command == "inpaint" else ("--up", "8")
    made = cli(command, "-i", "in.png", *args, "-m", tiny_model, *FAST, "--strength", "0.6", "-o", tmp_path / "a",
               "--json", "x")
    assert made.exit_code == 0, made.stderr
    monkeypatch.chdir("/")
    again = cli("replay", json.loads(made.stdout)["path"], "-o", tmp_path / "b", "--json")
    assert again.exit_code == 0, again.stderr
    record = json.loads(again.stdout)
    assert record["mode"] == command and record["strength"] == 0.6
    assert np.array_equal(pixels(record["path"]), pixels(json.loads(made.stdout)["path"]))
