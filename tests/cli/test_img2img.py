import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext, read_infotext
from tests.images import FAST, pixels, pngs, write_inputs


def test_img2img_writes_png_with_denoising_strength(cli, tiny_model, tmp_path):
    image, _ = write_inputs(tmp_path, (45, 30))
    result = cli("img2img", "--image", image, "--strength", "0.5", "-m", tiny_model, *FAST, "-o", tmp_path / "o",
                 "--json", "a harbour")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["mode"], record["strength"], record["steps_run"]) == ("img2img", 0.5, 2)
    assert (record["width"], record["height"]) == (48, 32), "the input's size rounded to a multiple of 8"
    prompt, _, params = parse_infotext(read_infotext(record["path"]))
    assert prompt == "a harbour" and params["Denoising strength"] == "0.5" and params["Size"] == "48x32"


def test_img2img_same_command_same_pixels(cli, tiny_model, tmp_path):
    image, _ = write_inputs(tmp_path)
    args = ("img2img", "-i", image, "-m", tiny_model, *FAST, "--name", "[seed]", "x")
    assert cli(*args, "-o", tmp_path / "a").exit_code == 0
    assert cli(*args, "-o", tmp_path / "b").exit_code == 0
    assert np.array_equal(pixels(tmp_path / "a" / "5.png"), pixels(tmp_path / "b" / "5.png"))


@pytest.mark.parametrize("resize", ["just", "crop", "fill"])
def test_img2img_resize_modes(cli, tiny_model, tmp_path, resize):
    image, _ = write_inputs(tmp_path)
    result = cli("img2img", "-i", image, "-m", tiny_model, *FAST, "-W", "64", "-H", "32", "--resize", resize,
                 "-o", tmp_path / "o", "x")
    assert result.exit_code == 0, result.stderr
    assert Image.open(result.stdout.strip()).size == (64, 32)


@pytest.mark.parametrize("args, message", [
    (("--strength", "0"), "error: --strength: 0.0 is out of range; use more than 0 and at most 1"),
    (("--strength", "1.5"), "error: --strength: 1.5 is out of range"),
    (("--resize", "stretch"), "error: --resize: unknown value 'stretch'; choose from just, crop, fill"),
])
def test_img2img_bad_flags_exit_2_nothing_written(cli, tiny_model, tmp_path, args, message):
    image, _ = write_inputs(tmp_path)
    result = cli("img2img", "-i", image, "-m", tiny_model, "--steps", "2", *args, "-o", tmp_path / "o", "x")
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and pngs(tmp_path / "o") == []


def test_img2img_missing_image_flag_is_a_usage_error(cli, tiny_model, tmp_path):
    result = cli("img2img", "-m", tiny_model, "-o", tmp_path / "o", "x")
    assert result.exit_code == 2 and "--image" in result.stderr and pngs(tmp_path / "o") == []


def test_img2img_refuses_an_inpainting_checkpoint(cli, tiny_inpaint_model, tmp_path):
    image, _ = write_inputs(tmp_path)
    result = cli("img2img", "-i", image, "-m", tiny_inpaint_model, *FAST, "-o", tmp_path / "o", "x")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --model: img2img needs a UNet with 4 input channels; this model's has 9")
    assert pngs(tmp_path / "o") == []


def test_img2img_subprocess_pipes_paths_only(tiny_model, tmp_path):
    image, _ = write_inputs(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "sdcli", "img2img", "-i", str(image), "-m", str(tiny_model), *FAST,
         "-o", str(tmp_path / "o"), "x"], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{tmp_path / 'o' / '00000-5.png'}\n" and "\x1b[" not in proc.stderr
