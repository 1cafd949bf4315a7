"""Flux.2 klein from the command line on the tiny model: defaults (CFG 1 without the negative pass, Euler, Simple),
true CFG above 1, img2img, inpaint, hires, prompt files, X/Y/Z, replay, refusals by flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")


def _png(out):
    (png,) = out.glob("*.png")
    return png


def _pixels(cli, tmp_path, name, *args, command="txt2img"):
    out = tmp_path / name
    result = cli(command, *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    return np.asarray(Image.open(_png(out)), dtype=np.int16)


def test_defaults_cfg_and_negative(cli, tiny_flux2, tmp_path):
    m = ("-m", tiny_flux2)
    base = _pixels(cli, tmp_path, "a", *m, "a cat")
    infotext = Image.open(_png(tmp_path / "a")).text["parameters"]
    assert "Sampler: Euler" in infotext and "Schedule type: Simple" in infotext and "CFG scale: 1" in infotext
    assert np.array_equal(base, _pixels(cli, tmp_path, "b", *m, "--sampler", "Euler", "--cfg-scale", "1", "a cat"))
    # CFG 1 (the distilled model's default): the negative prompt is never run; above 1 it is.
    assert np.array_equal(base, _pixels(cli, tmp_path, "c", *m, "-n", "dog", "a cat"))
    assert not np.array_equal(base, _pixels(cli, tmp_path, "d", *m, "--cfg-scale", "3", "-n", "dog", "a cat"))
    assert not np.array_equal(base, _pixels(cli, tmp_path, "e", *m, "--shift", "1", "a cat"))
    assert not np.array_equal(base, _pixels(cli, tmp_path, "f", *m, "a dog"))


def test_img2img_inpaint_and_hires(cli, tiny_flux2, tmp_path):
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(mask)
    source = np.asarray(Image.open(image), dtype=np.int16)
    low = _pixels(cli, tmp_path, "i", "-m", tiny_flux2, "-i", image, "--strength", "0.3", "a cat",
                  command="img2img")
    high = _pixels(cli, tmp_path, "j", "-m", tiny_flux2, "-i", image, "--strength", "0.9", "a cat",
                   command="img2img")
    assert not np.array_equal(low, high)  # (the tiny VAE does not reconstruct: no distance to the source to test)
    assert np.array_equal(low, _pixels(cli, tmp_path, "l", "-m", tiny_flux2, "-i", image, "--strength", "0.3",
                                       "a cat", command="img2img"))
    out = _pixels(cli, tmp_path, "k", "-m", tiny_flux2, "-i", image, "--mask", mask, "a cat", command="inpaint")
    assert np.abs(out[:2, :2] - source[:2, :2]).max() <= 2  # kept
    assert np.abs(out[12:20, 12:20] - source[12:20, 12:20]).mean() > 10  # repainted
    hires = _pixels(cli, tmp_path, "h", "-m", tiny_flux2, "--hires", "--hires-steps", "2", "--hires-upscaler",
                    "Lanczos", "a cat")
    assert hires.shape == (64, 64, 3)


def test_prompt_file_xyz_and_replay(cli, tiny_flux2, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n--prompt \"a dog\" --cfg_scale 2\n")
    result = cli("batch", prompts, "-m", tiny_flux2, *RUN, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "b").glob("*.png"))) == 2
    result = cli("xyz", "a cat", "-m", tiny_flux2, *RUN, "-o", tmp_path / "x", "--json",
                 "--x", "Sampler: Euler, DPM++ 2M", "--y", "Shift: 2.02, 1")
    assert result.exit_code == 0, result.stderr
    items = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len([i for i in items if i.get("type") == "item"]) == 4
    first = _pixels(cli, tmp_path, "r", "-m", tiny_flux2, "--cfg-scale", "2", "-n", "dog", "a cat")
    result = cli("replay", _png(tmp_path / "r"), "-m", tiny_flux2, "-o", tmp_path / "r2")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(first, np.asarray(Image.open(_png(tmp_path / "r2")), dtype=np.int16))


@pytest.mark.parametrize("args,message", [
    (("--sampler", "DDIM"), "--sampler: DDIM walks a discrete DDPM schedule; Flux.2 klein models take"),
    (("--clip-skip", "2"), "--clip-skip: a Flux.2 klein model has no CLIP skip"),
    (("--prediction-type", "v"), "--prediction-type: a Flux.2 klein model is a flow model"),
    (("--distilled-cfg", "3"), "--distilled-cfg: Flux.2 klein models have no distilled guidance"),
        (("--schedule", "uniform"), "--schedule: Uniform reads timesteps 9999..0 as sigmas on a Flux.2 klein model"),
    (("a (cat:1.4)",), "prompt: Flux.2 takes no emphasis weights"),
])
def test_refusals_name_the_flag(cli, tiny_flux2, tmp_path, args, message):
    prompt = () if args[-1].startswith("a (") else ("a cat",)
    result = cli("txt2img", "-m", tiny_flux2, *RUN, "-o", tmp_path / "o", *args, *prompt)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))


def test_a_single_file_is_detected_and_refused_in_one_line(cli, tmp_path):
    """Flux.2 transformer files are recognised (diffusers' flux2 key) but not loaded yet: one line, exit code 1."""
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "flux-2-klein-4b.safetensors"
    save_file({"model.diffusion_model.single_stream_modulation.lin.weight": torch.zeros(4, 4),
               "model.diffusion_model.img_in.weight": torch.zeros(4, 128)}, str(path))
    result = cli("txt2img", "-m", path, *RUN, "-o", tmp_path / "o", "a cat")
    assert result.exit_code in (1, 2)
    assert "a Flux.2 transformer file; sdcli loads Flux.2 models from diffusers folders only" in result.stderr
