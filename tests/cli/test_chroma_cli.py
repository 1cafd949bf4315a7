"""Chroma from the command line on the tiny model: its defaults (CFG 4 with the negative prompt, Euler, Simple),
CFG 1 without the negative pass, img2img, masked inpainting, hires, refusals naming the flag and the family."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")


def _run(cli, tmp_path, name, *args, mode="txt2img"):
    out = tmp_path / name
    result = cli(mode, *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16), Image.open(png).text["parameters"]


def test_defaults_and_true_cfg(cli, tiny_chroma, tmp_path):
    model = ("-m", tiny_chroma)
    base, infotext = _run(cli, tmp_path, "a", *model, "-n", "dog", "a cat")
    assert "CFG scale: 4" in infotext and "Sampler: Euler" in infotext and "Schedule type: Simple" in infotext
    same, _ = _run(cli, tmp_path, "b", *model, "--cfg-scale", "4", "--sampler", "Euler", "--schedule", "simple",
                   "-n", "dog", "a cat")
    assert np.array_equal(base, same)
    # The negative prompt counts above CFG 1 and is never run at CFG 1.
    assert not np.array_equal(base, _run(cli, tmp_path, "c", *model, "-n", "bird", "a cat")[0])
    one, _ = _run(cli, tmp_path, "d", *model, "--cfg-scale", "1", "-n", "dog", "a cat")
    assert np.array_equal(one, _run(cli, tmp_path, "e", *model, "--cfg-scale", "1", "-n", "bird", "a cat")[0])
    assert not np.array_equal(base, _run(cli, tmp_path, "f", *model, "-n", "dog", "a dog")[0])


def test_img2img_inpaint_and_hires(cli, tiny_chroma, tmp_path):
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(mask)
    source = np.asarray(Image.open(image), dtype=np.int16)
    low, _ = _run(cli, tmp_path, "i", "-m", tiny_chroma, "-i", image, "--strength", "0.3", "a cat",
                  mode="img2img")
    high, _ = _run(cli, tmp_path, "j", "-m", tiny_chroma, "-i", image, "--strength", "0.9", "a cat",
                   mode="img2img")
    assert np.abs(low - source).mean() < np.abs(high - source).mean()
    out, _ = _run(cli, tmp_path, "p", "-m", tiny_chroma, "-i", image, "--mask", mask, "a cat", mode="inpaint")
    assert np.abs(out[:2, :2] - source[:2, :2]).max() <= 2  # kept
    assert np.abs(out[12:20, 12:20] - source[12:20, 12:20]).mean() > 10  # repainted
    big, infotext = _run(cli, tmp_path, "h", "-m", tiny_chroma, "--hires", "--hires-scale", "2", "a cat")
    assert big.shape == (64, 64, 3) and "Hires" in infotext


@pytest.mark.parametrize("args,message", [
    (("--clip-skip", "2"), "--clip-skip: a Chroma model has no CLIP text encoder"),
    (("--sampler", "DDIM"), "--sampler: DDIM walks a discrete DDPM schedule; Chroma models take"),
    (("--prediction-type", "v"), "--prediction-type: a Chroma model is a flow model"),
    (("--schedule", "uniform"), "--schedule: Uniform reads timesteps 9999..0 as sigmas on a Chroma model"),
    (("--distilled-cfg", "3"), "Chroma"),
    (("(a cat:1.3)",), "--prompt: a Chroma model takes no emphasis weights"),
])
def test_refusals_name_the_flag(cli, tiny_chroma, tmp_path, args, message):
    prompt = () if args[0].startswith("(") else ("a cat",)
    result = cli("txt2img", "-m", tiny_chroma, "--steps", "2", "-W", "32", "-H", "32", "-o", tmp_path / "o",
                 *args, *prompt)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
