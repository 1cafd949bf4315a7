"""Flux.1 from the command line on tiny dev / schnell / Fill models: distilled guidance, CFG 1 without the
negative pass, refusals by flag, Fill inpainting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--sampler", "Euler", "--schedule", "simple")


def _pixels(cli, tmp_path, name, *args):
    out = tmp_path / name
    result = cli("txt2img", *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def test_dev_guidance_and_cfg(cli, tiny_flux, tmp_path):
    dev = ("-m", tiny_flux["flux-dev"])
    base = _pixels(cli, tmp_path, "a", *dev, "--cfg-scale", "1", "a cat")
    assert np.array_equal(base, _pixels(cli, tmp_path, "b", *dev, "--cfg-scale", "1", "a cat"))
    # CFG 1: the negative prompt is never run.
    assert np.array_equal(base, _pixels(cli, tmp_path, "c", *dev, "--cfg-scale", "1", "-n", "dog", "a cat"))
    assert not np.array_equal(base, _pixels(cli, tmp_path, "e", *dev, "--cfg-scale", "3", "-n", "dog", "a cat"))


@pytest.mark.parametrize("args,message", [
    (("--sampler", "DDIM"), "--sampler: DDIM walks a discrete DDPM schedule; Flux.1 dev models take"),
    (("--clip-skip", "2"), "--clip-skip: a Flux.1 dev model has no CLIP skip"),
    (("--prediction-type", "v"), "--prediction-type: a Flux.1 dev model is a flow model"),
    *[(("--sampler", name), f"--sampler: {name} walks a discrete DDPM schedule; Flux.1 dev models take")
      for name in ("PLMS", "UniPC", "DDIM CFG++")],
    (("--sampler", "Restart"), "--sampler: Restart re-noises as on an SD model; Flux.1 dev models take"),
    (("--sampler", "Euler", "--schedule", "uniform"),
     "--schedule: Uniform reads timesteps 9999..0 as sigmas on a Flux.1 dev model; use Simple"),
    (("--sampler", "Euler", "--schedule", "align your steps"),
     "--schedule: Align Your Steps is a list of SD sigmas (up to 14.6) on a Flux.1 dev model"),
])
def test_refusals_name_the_flag(cli, tiny_flux, tmp_path, args, message):
    result = cli("txt2img", "-m", tiny_flux["flux-dev"], "--steps", "2", "-o", tmp_path / "o", *args, "a cat")
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "o").exists()


def test_automatic_schedule_on_flux_is_simple_or_the_samplers_own(cli, tiny_flux, tmp_path):
    dev = ("-m", tiny_flux["flux-dev"])
    simple = _pixels(cli, tmp_path, "s", *dev, "a cat")  # RUN: Euler, Simple
    assert np.array_equal(simple, _pixels(cli, tmp_path, "a", *dev, "--schedule", "automatic", "a cat"))
    karras = _pixels(cli, tmp_path, "k", *dev, "--sampler", "DPM++ 2M", "--schedule", "karras", "a cat")
    assert np.array_equal(karras, _pixels(cli, tmp_path, "d", *dev, "--sampler", "DPM++ 2M", "--schedule",
                                          "automatic", "a cat"))
    assert not np.array_equal(karras, _pixels(cli, tmp_path, "e", *dev, "--sampler", "DPM++ 2M", "a cat"))
    infotext = Image.open(next((tmp_path / "a").glob("*.png"))).text["parameters"]
    assert "Schedule type: Simple" in infotext


def test_fill_model_inpaints_and_refuses_txt2img(cli, tiny_flux, tmp_path):
    fill = tiny_flux["flux-dev-inpaint"]
    result = cli("txt2img", "-m", fill, "--steps", "2", "-o", tmp_path / "t", "a cat")
    assert result.exit_code == 2 and "Flux.1 Fill model cannot run txt2img" in result.stderr
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(mask)
    result = cli("inpaint", "-m", fill, "-i", image, "--mask", mask, *RUN, "--cfg-scale", "1", "-o",
                 tmp_path / "f", "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = (tmp_path / "f").glob("*.png")
    out, source = np.asarray(Image.open(png), dtype=np.int16), np.asarray(Image.open(image), dtype=np.int16)
    assert out.shape == (32, 32, 3)
    assert np.abs(out[:2, :2] - source[:2, :2]).max() <= 2  # kept (pasted back through the blurred mask)
    assert np.abs(out[12:20, 12:20] - source[12:20, 12:20]).mean() > 10  # repainted


def test_low_bits_float8_stores_the_transformer_in_fp8(cli, tiny_flux, tmp_path):
    """--low-bits float8-e4m3fn: Forge's "Diffusion in Low Bits" as diffusers' layerwise casting (fp8 storage,
    computed in the run's dtype): close to the fp32 image, not equal to it, and recorded."""
    import torch

    from sdcli.io.metadata import read_infotext
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    dev = ("-m", tiny_flux["flux-dev"])
    full = _pixels(cli, tmp_path, "a", *dev, "a cat")
    low = _pixels(cli, tmp_path, "b", *dev, "--low-bits", "float8-e4m3fn", "a cat")
    assert not np.array_equal(full, low) and np.abs(full - low).mean() < 20
    (png,) = (tmp_path / "b").glob("*.png")
    assert "Diffusion in Low Bits: float8-e4m3fn" in read_infotext(png)
    plan = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)
    model = load_model(ModelRef(tiny_flux["flux-dev"], "dev", storage="float8-e4m3fn"), plan)
    weight = model.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert weight.dtype == torch.float8_e4m3fn
    for value, message in (("bnb-nf4", "--low-bits: bnb-nf4 needs a CUDA GPU (bitsandbytes' kernels); this job runs "
                                       "on cpu"),):  # bitsandbytes: tests/models/test_quantize.py
        result = cli("txt2img", *dev, "--steps", "2", "--low-bits", value, "-o", tmp_path / "c", "a cat")
        assert result.exit_code == 2 and message in result.stderr


def test_hires_distilled_cfg_is_forges(cli, tiny_flux, tiny_model, tmp_path):
    """Forge's Hires Distilled CFG Scale: the hires pass's guidance, written when it differs from the first
    pass's, read back by replay; refused by name on a model without distilled guidance."""
    dev = ("-m", tiny_flux["flux-dev"], "--hires", "--hires-steps", "2", "--distilled-cfg", "3.5", "a cat")
    base = _pixels(cli, tmp_path, "a", *dev)
    assert np.array_equal(base, _pixels(cli, tmp_path, "b", *dev, "--hires-distilled-cfg", "3.5"))
    other = _pixels(cli, tmp_path, "c", *dev, "--hires-distilled-cfg", "9")
    assert not np.array_equal(base, other)
    texts = {name: Image.open(next((tmp_path / name).glob("*.png"))).text["parameters"] for name in "abc"}
    assert "Hires Distilled CFG Scale" not in texts["a"] + texts["b"]
    assert "Distilled CFG Scale: 3.5" in texts["c"] and "Hires Distilled CFG Scale: 9" in texts["c"]
    replayed = cli("replay", next((tmp_path / "c").glob("*.png")), "-m", tiny_flux["flux-dev"], "-o", tmp_path / "r")
    assert replayed.exit_code == 0, replayed.stderr
    assert np.array_equal(other, np.asarray(Image.open(next((tmp_path / "r").glob("*.png"))), dtype=np.int16))
    refused = cli("txt2img", *RUN, "-m", tiny_model, "--hires", "--hires-distilled-cfg", "5", "-o", tmp_path / "s",
                  "a cat")
    assert refused.exit_code == 2 and "--hires-distilled-cfg: Stable Diffusion 1.x models have no distilled" in (
        refused.stderr)
    assert not (tmp_path / "s").exists()
    stray = cli("txt2img", *RUN, "-m", tiny_flux["flux-dev"], "--hires-distilled-cfg", "5", "-o", tmp_path / "t", "x")
    assert stray.exit_code == 2 and "--hires-distilled-cfg: given without --hires" in stray.stderr
