import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import png_info

FAST = ("--steps", "2", "--width", "32", "--height", "32")
WEBUI = ("a castle, (masterpiece:1.2)\nNegative prompt: lowres, blurry\n"
         "Steps: 2, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 32x32, "
         "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: v1.8.0")


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.fixture
def made(cli, tiny_model, tmp_path):
    """One sdcli image (seed 42, clip skip 2, Euler a) and its folder."""
    result = cli("txt2img", "a cat, on: a mat", "-n", "dog", "-m", tiny_model, *FAST, "--seed", "42",
                 "--clip-skip", "2", "--sampler", "Euler a", "-o", tmp_path / "a", "--name", "orig")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "a" / "orig.png"


def webui_png(path, text=WEBUI):
    Image.new("RGB", (32, 32), "gray").save(path, pnginfo=png_info(text))
    return path


def test_info_prints_the_infotext(cli, made):
    result = cli("info", made)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "a cat, on: a mat"
    assert result.stdout.splitlines()[1] == "Negative prompt: dog"
    assert "Sampler: Euler a, Schedule type: Uniform" in result.stdout and "Clip skip: 2" in result.stdout


def test_info_json_parses_sdcli_webui_jpeg_and_webp(cli, made, tmp_path):
    webui = webui_png(tmp_path / "webui.png")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + WEBUI.encode("utf-16-be")
    Image.new("RGB", (8, 8)).save(tmp_path / "w.jpg", exif=exif)
    Image.new("RGB", (8, 8)).save(tmp_path / "w.webp", exif=exif)
    result = cli("info", "--json", made, webui, tmp_path / "w.jpg", tmp_path / "w.webp")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["parameters"]["Seed"] == "42" and records[0]["sdcli"]["request"]["clip_skip"] == 2
    for rec in records[1:]:
        assert rec["prompt"] == "a castle, (masterpiece:1.2)"
        assert rec["negative_prompt"] == "lowres, blurry"
        assert rec["parameters"]["Sampler"] == "DPM++ 2M Karras" and rec["parameters"]["CFG scale"] == "6.5"
        assert rec["sdcli"] is None


def test_info_without_metadata(cli, made, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    none = cli("info", tmp_path / "plain.png")
    assert none.exit_code == 1
    assert none.stderr.strip() == f"error: {tmp_path / 'plain.png'}: no generation parameters found"
    some = cli("info", made, tmp_path / "plain.png", tmp_path / "missing.png")
    assert some.exit_code == 3 and "missing.png: no such file" in some.stderr
    assert "Seed: 42" in some.stdout


def test_replay_gives_identical_pixels(cli, made, tmp_path):
    result = cli("replay", made, "-o", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["seed"] == 42 and record["clip_skip"] == 2 and record["sampler"] == "Euler a"
    assert np.array_equal(px(made), px(record["path"]))
    assert Image.open(record["path"]).info["parameters"] == Image.open(made).info["parameters"]


def test_replay_overrides(cli, made, tiny_model, tmp_path):
    result = cli("replay", made, "--seed", "43", "--steps", "3", "-o", tmp_path / "b", "--json")
    record = json.loads(result.stdout)
    assert (record["seed"], record["steps"], record["prompt"]) == (43, 3, "a cat, on: a mat")
    direct = cli("txt2img", "a cat, on: a mat", "-n", "dog", "-m", tiny_model, "--steps", "3", "-W", "32", "-H",
                 "32", "--seed", "43", "--clip-skip", "2", "--sampler", "Euler a", "-o", tmp_path / "c", "--json")
    assert np.array_equal(px(record["path"]), px(json.loads(direct.stdout)["path"]))


def test_replay_names_a_missing_model(cli, tiny_model, tmp_path):
    model = tmp_path / "moved-model"
    shutil.copytree(tiny_model, model)
    made = cli("txt2img", "x", "-m", model, *FAST, "--seed", "1", "-o", tmp_path / "a", "--json")
    path = json.loads(made.stdout)["path"]
    shutil.rmtree(model)
    result = cli("replay", path, "-o", tmp_path / "b")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: its model {model} was not found; pass --model"
    assert cli("replay", path, "-m", tiny_model, "-o", tmp_path / "b").exit_code == 0


def test_replay_webui_image_needs_model_then_matches_txt2img(cli, tiny_model, tmp_path):
    webui = webui_png(tmp_path / "webui.png")
    refused = cli("replay", webui, "-o", tmp_path / "out")
    assert refused.exit_code == 2 and "not made by sdcli" in refused.stderr and "--model" in refused.stderr
    result = cli("replay", webui, "-m", tiny_model, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["sampler"], record["schedule"], record["clip_skip"], record["cfg_scale"]) == (
        "DPM++ 2M", "Karras", 2, 6.5)
    # No RNG key: made with the WebUI's default GPU noise, which --rng nv reproduces.
    direct = cli("txt2img", "a castle, (masterpiece:1.2)", "-n", "lowres, blurry", "-m", tiny_model, *FAST,
                 "--seed", "1234", "--cfg-scale", "6.5", "--clip-skip", "2", "--sampler", "DPM++ 2M Karras",
                 "--rng", "nv", "-o", tmp_path / "d", "--json")
    assert np.array_equal(px(record["path"]), px(json.loads(direct.stdout)["path"]))


def test_replay_of_image_without_metadata(cli, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = cli("replay", tmp_path / "plain.png")
    assert result.exit_code == 2 and "no generation parameters found" in result.stderr


def test_variation_seed_replays_exactly(cli, tiny_model, tmp_path):
    made = cli("txt2img", "x", "-m", tiny_model, *FAST, "--seed", "5", "--subseed-strength", "0.4",
               "-o", tmp_path / "a", "--json")
    record = json.loads(made.stdout)
    assert isinstance(record["subseed"], int) and "variation seed" in made.stderr
    again = cli("replay", record["path"], "-o", tmp_path / "b", "--json")
    assert json.loads(again.stdout)["subseed"] == record["subseed"]
    assert np.array_equal(px(record["path"]), px(json.loads(again.stdout)["path"]))
