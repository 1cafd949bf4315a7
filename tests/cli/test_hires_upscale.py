"""`txt2img --hires`, replay of hires images (sdcli's and the WebUI's), and `sdcli upscale`, end to end."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext, png_info, read_infotext

FAST = ("--steps", "3", "--width", "32", "--height", "32", "--seed", "11")
HIRES = ("--hires", "--hires-steps", "2")


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def run_json(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    from sdcli.models.tiny_assets import write_tiny_upscaler

    return write_tiny_upscaler(tmp_path_factory.mktemp("up") / "4x-Tiny.safetensors")


def test_hires_cli_size_keys_info_and_exact_replay(cli, tiny_model, tmp_path):
    [record] = run_json(cli, "txt2img", "a red fox", "-n", "blur", "-m", tiny_model, *FAST, *HIRES,
                        "--hires-upscaler", "Lanczos", "--hires-denoise", "0.6", "--hires-prompt", "a red fox, sharp",
                        "--hires-sampler", "Euler a", "-o", tmp_path / "a")
    assert Image.open(record["path"]).size == (64, 64)
    assert (record["width"], record["height"]) == (32, 32) and record["hires"]["upscaler"] == "Lanczos"
    info = run_json(cli, "info", record["path"])[0]
    params = info["parameters"]
    assert params["Size"] == "32x32" and params["Denoising strength"] == "0.6"
    assert (params["Hires upscale"], params["Hires steps"], params["Hires upscaler"]) == ("2", "2", "Lanczos")
    assert (params["Hires prompt"], params["Hires sampler"]) == ("a red fox, sharp", "Euler a")
    [again] = run_json(cli, "replay", record["path"], "-o", tmp_path / "b")
    assert np.array_equal(px(record["path"]), px(again["path"]))
    assert read_infotext(again["path"]) == read_infotext(record["path"])


def test_hires_upscaler_file_and_models_folder_name_replay_exactly(cli, tiny_model, esrgan, tmp_path):
    [by_path] = run_json(cli, "txt2img", "a cat", "-m", tiny_model, *FAST, *HIRES, "--hires-scale", "1.5",
                         "--hires-upscaler", esrgan, "-o", tmp_path / "a")
    assert Image.open(by_path["path"]).size == (48, 48)
    assert parse_infotext(by_path["infotext"])[2]["Hires upscaler"] == "4x-Tiny"
    (tmp_path / "models" / "ESRGAN").mkdir(parents=True)
    (tmp_path / "models" / "ESRGAN" / "4x-Tiny.safetensors").write_bytes(esrgan.read_bytes())
    [by_name] = run_json(cli, "txt2img", "a cat", "-m", tiny_model, *FAST, *HIRES, "--hires-scale", "1.5",
                         "--models-dir", tmp_path / "models", "--hires-upscaler", "4x-Tiny", "-o", tmp_path / "b")
    assert np.array_equal(px(by_path["path"]), px(by_name["path"]))
    [again] = run_json(cli, "replay", by_path["path"], "-o", tmp_path / "c")
    assert np.array_equal(px(by_path["path"]), px(again["path"]))
    lanczos = run_json(cli, "txt2img", "a cat", "-m", tiny_model, *FAST, *HIRES, "--hires-scale", "1.5",
                       "--hires-upscaler", "Lanczos", "-o", tmp_path / "d")[0]
    assert not np.array_equal(px(by_path["path"]), px(lanczos["path"]))


WEBUI_HIRES = ("a castle\nNegative prompt: lowres\n"
               "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, Seed: 99, Size: 32x32, "
               "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, "
               "Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent (nearest-exact), Version: v1.10.1")


def test_webui_hires_infotext_replays_with_the_hires_pass(cli, tiny_model, tmp_path):
    webui = tmp_path / "webui.png"
    Image.new("RGB", (64, 64), "gray").save(webui, pnginfo=png_info(WEBUI_HIRES))
    result = cli("replay", webui, "-m", tiny_model, "-o", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"hires\.upscaler +'Latent \(nearest-exact\)' +\[WebUI infotext\]", result.stderr)
    assert "cannot honour" not in result.stderr  # every hires key is used
    record = json.loads(result.stdout)
    assert Image.open(record["path"]).size == (64, 64)
    direct = run_json(cli, "txt2img", "a castle", "-n", "lowres", "-m", tiny_model, "--steps", "3", "-W", "32",
                      "-H", "32", "--seed", "99", "--cfg-scale", "6", "--sampler", "Euler a", "--rng", "nv", "--hires",
                      "--hires-steps", "2", "--hires-denoise", "0.45", "--hires-upscaler", "Latent (nearest-exact)",
                      "-o", tmp_path / "d")[0]
    assert np.array_equal(px(record["path"]), px(direct["path"]))
    other = cli("replay", webui, "-m", tiny_model, "-o", tmp_path / "o", "--hires-upscaler", "Lanczos", "--json")
    assert other.exit_code == 0, other.stderr
    assert not np.array_equal(px(record["path"]), px(json.loads(other.stdout)["path"]))


@pytest.mark.parametrize(("args", "message"), [
    (("--hires-scale", "3"), "error: --hires-scale: given without --hires; add --hires"),
    (("--hires", "--hires-size", "64by64"), "error: --hires-size: '64by64' is not WIDTHxHEIGHT"),
    (("--hires", "--hires-upscaler", "Latent (sideways)"), "error: --hires-upscaler: 'Latent (sideways)' is "
                                                            "neither an upscaler"),
    (("--hires", "--hires-denoise", "1.5"), "error: --hires-denoise: 1.5 is out of range"),
    (("--hires", "--hires-scale", "8", "-W", "2048", "-H", "2048"), "error: --hires-scale/--hires-size: the hires "
                                                                      "image would be 16384x16384"),
])
def test_bad_hires_flags_are_one_line_usage_errors(cli, tiny_model, tmp_path, args, message):
    result = cli("txt2img", "x", "-m", tiny_model, "--steps", "1", *args, "-o", tmp_path / "o")
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_pickle_hires_upscaler_refused_without_allow_pickle(cli, tiny_model, esrgan, tmp_path):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(esrgan)), tmp_path / "4x.pth")
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--hires", "--hires-upscaler", tmp_path / "4x.pth",
                 "-o", tmp_path / "o")
    assert result.exit_code == 2 and "is a pickle file (.pth)" in result.stderr
    allowed = cli("txt2img", "x", "-m", tiny_model, *FAST, *HIRES, "--hires-upscaler", tmp_path / "4x.pth",
                  "--allow-pickle", "-o", tmp_path / "o")
    assert allowed.exit_code == 0, allowed.stderr


# -- sdcli upscale ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An sdcli-style PNG with infotext and record, and a JPEG with EXIF UserComment."""
    from sdcli.io.metadata import save_image

    root = tmp_path_factory.mktemp("upscale-in")
    image = Image.fromarray((np.random.default_rng(3).random((24, 40, 3)) * 255).astype(np.uint8))
    text = "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 40x24, Version: sdcli"
    save_image(image, root / "cat.png", "png", 90, text, {"sdcli": "0", "request": {"prompt": "a cat"}})
    save_image(image, root / "cat.jpg", "jpeg", 95, text)
    return root, text


def test_upscale_keeps_metadata_and_adds_the_webui_extras_keys(cli, made, tmp_path):
    root, text = made
    records = run_json(cli, "upscale", root / "cat.png", root / "cat.jpg", "--scale", "2", "-o", tmp_path / "o")
    png, jpg = (Image.open(r["path"]) for r in records)
    assert png.size == jpg.size == (80, 48) and png.format == "PNG" and jpg.format == "JPEG"
    assert records[0]["path"].endswith("cat.png") and records[1]["path"].endswith("cat.jpg")
    assert read_infotext(records[0]["path"]) == text == read_infotext(records[1]["path"])
    keys = "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert png.info["postprocessing"] == png.info["extras"] == keys
    assert json.loads(png.info["sdcli"])["request"]["prompt"] == "a cat"
    assert run_json(cli, "info", records[0]["path"])[0]["parameters"]["Seed"] == "3"
    again = run_json(cli, "upscale", root / "cat.png", "--scale", "2", "-o", tmp_path / "o")[0]
    assert again["path"].endswith("cat-1.png")  # never over an existing file
    assert np.array_equal(px(records[0]["path"]), px(again["path"]))


def test_upscale_with_esrgan_and_size_crop(cli, made, esrgan, tmp_path):
    root, _ = made
    [rec] = run_json(cli, "upscale", root / "cat.png", "-u", esrgan, "--size", "100x100", "-o", tmp_path / "o")
    image = Image.open(rec["path"])
    assert image.size == (100, 100)
    assert image.info["postprocessing"] == ("Postprocess upscale to: 100x100, Postprocess crop to: 100x100, "
                                            "Postprocess upscaler: 4x-Tiny")
    lanczos = run_json(cli, "upscale", root / "cat.png", "--size", "100x100", "-o", tmp_path / "l")[0]
    assert not np.array_equal(px(rec["path"]), px(lanczos["path"]))
    nearest = run_json(cli, "upscale", root / "cat.png", "-u", "nearest", "--scale", "2", "-o", tmp_path / "n")[0]
    assert np.array_equal(px(nearest["path"]), np.asarray(Image.open(root / "cat.png").resize((80, 48), 0)))


@pytest.mark.parametrize(("args", "message"), [
    (("-u", "Latent"), "error: --upscaler: Latent works on latents (hires fix only)"),
    (("-u", "None"), "error: --upscaler: None does not upscale"),
    (("--scale", "9"), "error: --scale: 9 is out of range"),
    (("--scale", "2", "--size", "64x64"), "error: --scale/--size: give one of them"),
    (("--size", "64"), "error: --size: '64' is not WIDTHxHEIGHT"),
    (("-u", "missing.safetensors"), "error: --upscaler: 'missing.safetensors' is neither an upscaler"),
])
def test_upscale_bad_flags_are_one_line_usage_errors(cli, made, tmp_path, args, message):
    root, _ = made
    result = cli("upscale", root / "cat.png", *args, "-o", tmp_path / "o")
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_upscale_checks_every_input_before_writing(cli, made, tmp_path):
    root, _ = made
    (tmp_path / "bad.png").write_bytes(b"not an image")
    result = cli("upscale", root / "cat.png", tmp_path / "bad.png", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "bad.png is not a PNG, JPEG or WebP image" in result.stderr
    assert not (tmp_path / "o").exists()


def test_replay_never_resolves_a_relative_upscaler_file_of_a_record(cli, tmp_path):
    record = {"sdcli": "0.1.0", "model": None, "request": {"prompt": "x", "width": 32, "height": 32,
                                                           "hires": {"upscaler": "4x.safetensors"}}}
    Image.new("RGB", (8, 8)).save(tmp_path / "r.png", pnginfo=png_info("x\nSteps: 2, Seed: 1, Size: 32x32", record))
    result = cli("replay", tmp_path / "r.png", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "hires upscaler '4x.safetensors' is a relative path" in result.stderr


def test_batch_lines_run_the_hires_pass(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text('--prompt "a fox" --enable_hr true --hr_second_pass_steps 2 --denoising_strength 0.5 '
                       '--hr_upscaler Lanczos\n--prompt b\n')
    records = run_json(cli, "batch", prompts, "-m", tiny_model, "--steps", "2", "-W", "32", "-H", "32",
                       "-o", tmp_path / "o")
    hires, plain = (Image.open(r["path"]) for r in records if r["type"] == "item")
    assert hires.size == (64, 64) and plain.size == (32, 32)
    assert "Denoising strength: 0.5, RNG: CPU, Hires upscale: 2, Hires steps: 2" in hires.info["parameters"]
