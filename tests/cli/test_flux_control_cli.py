"""Flux Control from the command line on tiny models: a Flux Control model (and Flux dev with a BFL control LoRA)
takes --control-image as its second latent; the image changes the pixels, the same settings repeat them; a
control-LoRA job equals the same weights merged by hand into a Flux Control model; refusals in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.models.tiny_flux_lora import write_tiny_flux_control_lora

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--sampler", "Euler", "--schedule", "simple")


@pytest.fixture(scope="module")
def control(tiny_flux, tmp_path_factory):
    """A tiny Flux Control folder, a BFL control LoRA for tiny dev, that LoRA merged by hand into a Flux Control
    folder, and two control images."""
    from sdcli.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("flux-control")
    rng = np.random.default_rng(0)
    images = {}
    for name in ("a", "b"):
        images[name] = root / f"{name}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(images[name])
    lora = write_tiny_flux_control_lora(tiny_flux["flux-dev"], root / "canny-lora.safetensors", seed=1)
    return {"model": build_tiny(root / "flux-control", arch="flux-control"), "lora": lora, **images,
            "merged": _merged(tiny_flux["flux-dev"], lora, root / "merged")}


def _merged(dev, lora, dest):
    """Flux dev with a BFL control LoRA merged by hand, in BFL names: img_in widened with zero columns, W + B @ A
    for every pair, the norm scales replaced; saved as a Flux Control folder (128 inputs)."""
    import torch
    from safetensors.torch import load_file, save_file

    from sdcli.models.flux_keys import bfl_to_diffusers, diffusers_to_bfl

    shutil.copytree(dev, dest)
    weights = dest / "transformer" / "diffusion_pytorch_model.safetensors"
    state = {k: v.float() for k, v in diffusers_to_bfl(load_file(str(weights))).items()}
    state["img_in.weight"] = torch.cat([state["img_in.weight"], torch.zeros_like(state["img_in.weight"])], dim=1)
    pairs = load_file(str(lora))
    for key, value in pairs.items():
        if key.endswith(".scale"):
            state[key] = value
        elif key.endswith(".lora_A.weight"):
            name = key[:-len(".lora_A.weight")]
            state[f"{name}.weight"] = state[f"{name}.weight"] + pairs[f"{name}.lora_B.weight"] @ value
    save_file({k: v.contiguous() for k, v in bfl_to_diffusers(state).items()}, str(weights))
    for path, edit in ((dest / "transformer" / "config.json", {"in_channels": 128, "out_channels": 64}),
                       (dest / "model_index.json", {"_class_name": "FluxControlPipeline"})):
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    return dest


def _pixels(cli, out, *args, mode="txt2img"):
    result = cli(mode, *RUN, "-o", out, *args, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def test_the_control_image_steers_a_flux_control_model(cli, control, tmp_path):
    model = ("-m", control["model"])
    a = _pixels(cli, tmp_path / "a", *model, "--control-image", control["a"])
    assert np.array_equal(a, _pixels(cli, tmp_path / "a2", *model, "--control-image", control["a"]))
    assert np.abs(a - _pixels(cli, tmp_path / "b", *model, "--control-image", control["b"])).max() > 8
    canny = _pixels(cli, tmp_path / "c", *model, "--control-image", control["a"], "--preprocessor", "canny")
    assert not np.array_equal(a, canny)
    img2img = ("-i", control["b"], "--strength", "0.8", *model)
    assert not np.array_equal(_pixels(cli, tmp_path / "i", *img2img, "--control-image", control["a"], mode="img2img"),
                              _pixels(cli, tmp_path / "j", *img2img, "--control-image", control["b"], mode="img2img"))
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((16, 16), 255, np.uint8), 8)).save(mask)
    inpaint = ("-i", control["b"], "--mask", mask, *model)
    assert not np.array_equal(_pixels(cli, tmp_path / "p", *inpaint, "--control-image", control["a"], mode="inpaint"),
                              _pixels(cli, tmp_path / "q", *inpaint, "--control-image", control["b"], mode="inpaint"))


def test_a_control_lora_job_equals_the_lora_merged_by_hand(cli, tiny_flux, control, tmp_path):
    dev = ("-m", tiny_flux["flux-dev"], "--lora", control["lora"])
    loaded = _pixels(cli, tmp_path / "l", *dev, "--control-image", control["a"])
    merged = _pixels(cli, tmp_path / "m", "-m", control["merged"], "--control-image", control["a"])
    assert np.abs(loaded - merged).max() <= 1
    assert np.abs(loaded - _pixels(cli, tmp_path / "b", *dev, "--control-image", control["b"])).max() > 2
    # The hand merge can fail: without the LoRA's norm scales the pixels are far off.
    base = _pixels(cli, tmp_path / "d", "-m", tiny_flux["flux-dev"])
    assert np.abs(loaded - base).max() > 8


def test_weight_zero_ignores_the_control_image_but_keeps_the_norm_scales(cli, tiny_flux, control, tmp_path):
    """At weight 0 the LoRA pairs add nothing, so the widened x_embedder's control columns are zero; the q/k norm
    scales a BFL control LoRA carries are loaded as they are (diffusers does not scale them)."""
    dev = ("-m", tiny_flux["flux-dev"], "--lora", f"{control['lora']}:0")
    zero = _pixels(cli, tmp_path / "a", *dev, "--control-image", control["a"])
    assert np.array_equal(zero, _pixels(cli, tmp_path / "b", *dev, "--control-image", control["b"]))
    assert not np.array_equal(zero, _pixels(cli, tmp_path / "d", "-m", tiny_flux["flux-dev"]))


@pytest.mark.parametrize("case,message", [
    ("control-without-image", "--control-image: a Flux.1 Control model needs a control image: give --control-image"),
    ("dev-with-image", "--control-image: without --controlnet it is the control input of a Flux Control model"),
    ("lora-without-image", "--control-image: a Flux.1 dev model with a control input (Flux Control, or a BFL "
                           "control LoRA) needs a control image"),
    ("two-images", "--control-image: needs --controlnet MODEL (or one --control-image for a Flux Control model)"),
    ("hires", "--hires: not with a Flux Control model's control image"),
])
def test_refusals_are_one_line(cli, tiny_flux, control, tmp_path, case, message):
    args = {
        "control-without-image": ("-m", control["model"]),
        "dev-with-image": ("-m", tiny_flux["flux-dev"], "--control-image", control["a"]),
        "lora-without-image": ("-m", tiny_flux["flux-dev"], "--lora", control["lora"]),
        "two-images": ("-m", control["model"], "--control-image", control["a"], "--control-image", control["b"]),
        "hires": ("-m", control["model"], "--control-image", control["a"], "--hires"),
    }[case]
    result = cli("txt2img", *RUN, "-o", tmp_path / "o", *args, "a cat")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_an_sd_model_refuses_a_control_image_alone(cli, tiny_model, control, tmp_path):
    result = cli("txt2img", "-m", tiny_model, "--steps", "2", "-o", tmp_path / "o", "--control-image", control["a"],
                 "a cat")
    assert result.exit_code == 2
    assert "--control-image: a Stable Diffusion 1.x model takes no control image without --controlnet MODEL" \
        in result.stderr


def test_a_bfl_single_file_is_flux_control_and_equals_its_folder(cli, control, tmp_path):
    files = tmp_path / "f"
    assert cli("tiny", "--arch", "flux-control", "--single-file", files / "ctl.safetensors", "--layout",
               "bfl").exit_code == 0
    parts = ("--text-encoder", files / "clip_l.safetensors", "--text-encoder", files / "t5xxl.safetensors",
             "--vae", files / "ae.safetensors")
    single = _pixels(cli, tmp_path / "s", "-m", files / "ctl.safetensors", *parts, "--control-image", control["a"])
    assert np.array_equal(single, _pixels(cli, tmp_path / "d", "-m", control["model"], "--control-image",
                                          control["a"]))
