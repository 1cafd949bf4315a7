"""Flux.1 from every kind of file through `sdcli txt2img`: the tiny flux-dev as a diffusers folder, BFL / ComfyUI /
diffusers-layout transformer files with separate CLIP-L, T5-XXL and VAE files, an all-in-one checkpoint, GGUF
(F32, F16, Q8_0) and fp8 files give the same pixels (or differ by their rounding only); missing parts and a VAE of
another family are refused in one line before anything loads; the models folders and `sdcli models`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.flow_files import offline

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--sampler", "Euler", "--schedule", "simple",
       "--cfg-scale", "1")
LAYOUTS = ("bfl", "comfy", "diffusers", "all-in-one", "gguf-F32", "gguf-F16", "gguf-Q8_0", "bfl-fp8", "seed1")


@pytest.fixture(scope="session")
def flux_files(tmp_path_factory, tiny_flux) -> dict[str, Path]:
    """The tiny flux-dev (seed 0, as the tiny_flux folder) in each file layout, each in its own folder; value: the
    --model file ("seed1": a bfl file of other weights)."""
    from sdcli.models.tiny_flux import write_tiny_flux_files

    root = tmp_path_factory.mktemp("flux-files")
    out = {}
    for name in LAYOUTS:
        layout, _, qtype = name.partition("-") if name != "all-in-one" else (name, "", "")
        seed = 1 if name == "seed1" else 0
        layout = "bfl" if name == "seed1" else layout
        suffix = ".gguf" if layout == "gguf" else ".safetensors"
        files = write_tiny_flux_files(root / name / f"flux1-dev{suffix}", "flux-dev", seed, layout,
                                      qtype if layout == "gguf" else "F16", fp8=qtype == "fp8")
        out[name] = files.get("all-in-one") or files["transformer"]
    return out


def _pixels(cli, tmp_path, name, model, *args) -> np.ndarray:
    out = tmp_path / name
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def _parts(model: Path, order=("clip_l", "t5xxl")) -> tuple[str, ...]:
    encoders = [a for name in order for a in ("--text-encoder", str(model.parent / f"{name}.safetensors"))]
    return (*encoders, "--vae", str(model.parent / "ae.safetensors"))


@pytest.fixture(scope="session")
def folder_pixels(tiny_flux, tmp_path_factory):
    from typer.testing import CliRunner

    from sdcli.cli import app

    out = tmp_path_factory.mktemp("flux-folder-png")
    result = CliRunner().invoke(app, ["txt2img", "-m", str(tiny_flux["flux-dev"]), *RUN, "-o", str(out), "a cat"])
    assert result.exit_code == 0, result.stderr
    return np.asarray(Image.open(next(out.glob("*.png"))), dtype=np.int16)


@pytest.mark.parametrize("layout", ["bfl", "comfy", "diffusers", "all-in-one", "gguf-F32"])
def test_every_layout_gives_the_folders_pixels(cli, flux_files, folder_pixels, tmp_path, layout):
    model = flux_files[layout]
    parts = () if layout == "all-in-one" else _parts(model, ("t5xxl", "clip_l") if layout == "comfy" else
                                                     ("clip_l", "t5xxl"))  # encoder order does not matter
    assert np.array_equal(_pixels(cli, tmp_path, "o", model, *parts), folder_pixels)


def test_a_t5_gguf_text_encoder_gives_the_folders_pixels(cli, tiny_flux, flux_files, folder_pixels, tmp_path):
    """city96's T5 encoder GGUF layout (llama.cpp's enc.blk.* names), F32: read through models.gguf_text."""
    from transformers import T5EncoderModel

    from sdcli.models.gguf_text import write_gguf_encoder

    t5 = T5EncoderModel.from_pretrained(tiny_flux["flux-dev"] / "text_encoder_2")
    gguf = write_gguf_encoder(t5, tmp_path / "t5-v1_1-xxl-encoder-f32.gguf", "F32")
    model = flux_files["bfl"]
    parts = ("--text-encoder", str(model.parent / "clip_l.safetensors"), "--text-encoder", str(gguf), "--vae",
             str(model.parent / "ae.safetensors"))
    assert np.array_equal(_pixels(cli, tmp_path, "o", model, *parts), folder_pixels)


def test_other_weights_give_other_pixels(cli, flux_files, folder_pixels, tmp_path):
    """The equality above can fail: a transformer of other weights (seed 1) with the same encoders and VAE."""
    model = flux_files["seed1"]
    assert not np.array_equal(_pixels(cli, tmp_path, "o", model, *_parts(flux_files["bfl"])[:-2], "--vae",
                                      str(flux_files["bfl"].parent / "ae.safetensors")), folder_pixels)


def test_f16_gguf_is_within_a_level_and_q8_0_falls_back_to_f32(cli, flux_files, folder_pixels, tmp_path):
    """F16 GGUF: 6 of the tiny transformer's 2-D weights are stored F16 (the rest F32, as city96's layout keeps
    1-D, small and embedding weights); measured: max 1 level, mean < 0.1. Q8_0: no tiny row (16 or 80 values)
    splits into 32-value blocks, so every tensor falls back to F32 and the pixels are the F32 ones (Q8_0's
    dequantization is tested at full width in tests/models)."""
    from gguf import GGUFReader

    f16 = _pixels(cli, tmp_path, "f16", flux_files["gguf-F16"], *_parts(flux_files["gguf-F16"]))
    diff = np.abs(f16 - folder_pixels)
    assert 0 < diff.max() <= 1 and diff.mean() < 0.1
    types = {t.tensor_type.name for t in GGUFReader(flux_files["gguf-Q8_0"]).tensors}
    assert types == {"F32"}
    assert np.array_equal(_pixels(cli, tmp_path, "q8", flux_files["gguf-Q8_0"], *_parts(flux_files["gguf-Q8_0"])),
                          folder_pixels)


def test_fp8_file_is_the_fp32_model_rounded_to_fp8(cli, flux_files, folder_pixels, tmp_path):
    import torch

    from sdcli.models.flux_load import load_flux_transformer
    from sdcli.models.tiny_flux import FLUX_TRANSFORMER

    fp8 = load_flux_transformer(flux_files["bfl-fp8"], torch.float32, dict(FLUX_TRANSFORMER)).state_dict()
    fp32 = load_flux_transformer(flux_files["bfl"], torch.float32, dict(FLUX_TRANSFORMER)).state_dict()
    for key, value in fp32.items():  # exactly the fp32 weights rounded to float8_e4m3fn, computed in fp32
        assert torch.equal(fp8[key], value.to(torch.float8_e4m3fn).float()), key
    pixels = _pixels(cli, tmp_path, "o", flux_files["bfl-fp8"], *_parts(flux_files["bfl-fp8"]))
    assert pixels.shape == folder_pixels.shape and not np.array_equal(pixels, folder_pixels)


@pytest.mark.parametrize("drop,message", [
    ("clip_l", "--text-encoder: flux1-dev.safetensors holds only the transformer; give the CLIP-L encoder "
               "(clip_l.safetensors) with --text-encoder FILE|NAME, or put it in"),
    ("t5xxl", "--text-encoder: flux1-dev.safetensors holds only the transformer; give the T5-XXL encoder "
              "(t5xxl_fp16.safetensors) with --text-encoder FILE|NAME, or put it in"),
    ("vae", "--vae: flux1-dev.safetensors holds only the transformer; give the Flux VAE (ae.safetensors) with "
            "--vae FILE|NAME, or put it in"),
])
def test_a_missing_part_is_refused_in_one_line(cli, flux_files, tmp_path, drop, message):
    model = flux_files["bfl"]
    args = [a for name in ("clip_l", "t5xxl") if name != drop
            for a in ("--text-encoder", model.parent / f"{name}.safetensors")]
    args += [] if drop == "vae" else ["--vae", model.parent / "ae.safetensors"]
    result = cli("txt2img", "-m", model, *RUN, "-o", tmp_path / "o", *args, "a cat")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: " + message) and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_an_sd_vae_on_flux_and_two_t5s_are_refused(cli, flux_files, tiny_flux, tiny_model, tmp_path):
    model = flux_files["bfl"]
    for target in (model, tiny_flux["flux-dev"]):
        result = cli("txt2img", "-m", target, *RUN, "-o", tmp_path / "o", *_parts(model)[:-2], "--vae",
                     tiny_model / "vae", "a cat")
        assert result.exit_code == 2
        assert "--vae: " in result.stderr and ("is a 4-channel Stable Diffusion VAE; a Flux.1 dev model needs a "
                                               "16-channel Flux VAE (ae.safetensors)") in result.stderr
    t5 = model.parent / "t5xxl.safetensors"
    result = cli("txt2img", "-m", model, *RUN, "-o", tmp_path / "o", "--text-encoder", t5, "--text-encoder", t5,
                 "a cat")
    assert result.exit_code == 2 and "--text-encoder: two T5-XXL encoders given" in result.stderr
    assert not (tmp_path / "o").exists()


def test_comfy_folders_offline_and_sdcli_models(cli, flux_files, folder_pixels, tmp_path, monkeypatch):
    """Parts found in a ComfyUI install (diffusion_models/, clip/, vae/) with every socket failing and empty
    Hugging Face caches; `sdcli models --json` names each file's family and kind."""
    comfy = tmp_path / "ComfyUI" / "models"
    for sub, files in (("unet", ["flux1-dev.gguf"]), ("clip", ["clip_l.safetensors", "t5xxl.safetensors"]),
                       ("vae", ["ae.safetensors"])):
        (comfy / sub).mkdir(parents=True)
        for name in files:
            shutil.copy(flux_files["gguf-F32"].parent / name, comfy / sub / name)
    offline(tmp_path, monkeypatch)
    pixels = _pixels(cli, tmp_path, "o", "flux1-dev", "--comfy-dir", comfy.parent)
    assert np.array_equal(pixels, folder_pixels)

    import json

    result = cli("models", "--comfy-dir", comfy.parent, "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: (r["kind"], r["what"]) for r in map(json.loads, result.stdout.splitlines())}
    assert what == {"flux1-dev": ("diffusion_model", "flux-dev transformer (gguf, fp32)"),
                    "clip_l": ("text_encoder", "clip_l text encoder (fp32)"),
                    "t5xxl": ("text_encoder", "t5xxl text encoder (fp32)"),
                    "ae": ("vae", "flux vae (ldm, fp32)")}


def test_models_folder_parts_are_written_as_forge_modules_and_replay(cli, flux_files, folder_pixels, tmp_path):
    """Parts found in a WebUI/Forge models folder are recorded (the record replays without the folder) and written
    as Forge's `Module N`; a Forge infotext naming the model and its modules replays from the folder by name."""
    import shutil

    from PIL.PngImagePlugin import PngInfo

    from sdcli.io.metadata import read_infotext

    root = tmp_path / "models"
    for kind, names in (("Stable-diffusion", ["flux1-dev"]), ("text_encoder", ["clip_l", "t5xxl"]), ("VAE", ["ae"])):
        (root / kind).mkdir(parents=True)
        for name in names:
            shutil.copy(flux_files["bfl"].parent / f"{name}.safetensors", root / kind)
    made = tmp_path / "made"
    result = cli("txt2img", "--models-dir", root, "-m", "flux1-dev", *RUN, "-o", made, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = made.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png), dtype=np.int16), folder_pixels)
    text = read_infotext(png)
    assert text.endswith("Module 1: ae, Module 2: clip_l, Module 3: t5xxl") and "VAE" not in text
    result = cli("replay", png, "-o", tmp_path / "again")  # the record names the files: no models folder needed
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "again").glob("*.png"))), dtype=np.int16),
                          folder_pixels)
    forge = tmp_path / "forge.png"
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG "
                  "Scale: 3.5, Seed: 3, Size: 32x32, Model hash: 0123456789, Model: flux1-dev, RNG: CPU, Version: "
                  "f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae, Module 2: clip_l, Module 3: t5xxl")
    Image.open(png).save(forge, pnginfo=info)
    assert cli("replay", forge, "-o", tmp_path / "x").exit_code == 2  # no folder: --model is asked for
    result = cli("replay", forge, "--models-dir", root, "-o", tmp_path / "forge-out")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "forge-out").glob("*.png"))), dtype=np.int16),
                          folder_pixels)


def test_an_embedding_on_flux_is_refused(cli, tiny_flux, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"emb_params": torch.randn(1, 32)}, str(tmp_path / "shiny.safetensors"))
    result = cli("txt2img", "-m", tiny_flux["flux-dev"], *RUN, "--embedding", tmp_path / "shiny.safetensors",
                 "-o", tmp_path / "o", "a shiny cat")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --embedding: shiny: Flux.1 dev models take no textual-inversion embeddings"
