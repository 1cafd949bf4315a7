"""Image metadata is untrusted: replay shows its plan, type-checks the record, never loads what an image names."""

import json
import re

import pytest
from PIL import Image

from sdcli.io.metadata import png_info

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = ("--steps", "2", "--width", "32", "--height", "32")
GOOD = {"prompt": "x", "steps": 2, "width": 32, "height": 32, "seed": 3, "mode": "txt2img"}


def forged(path, request=None, model=None, infotext="x\nSteps: 2, Seed: 3, Size: 32x32", **record):
    """A PNG with the given infotext and sdcli record (request None: no record at all)."""
    data = None if request is None else {"sdcli": "0", "model": model, "request": request, **record}
    Image.new("RGB", (32, 32), "gray").save(path, pnginfo=png_info(infotext, data))
    return path


@pytest.mark.parametrize(("field", "value", "says"), [
    ("steps", "20", "sdcli record field steps is '20'; it must be a whole number or null"),
    ("cfg_scale", True, "sdcli record field cfg_scale is True; it must be a number or null"),
    ("prompt", ["a"], "sdcli record field prompt is ['a']; it must be text"),
    ("seed", 1.5, "sdcli record field seed is 1.5; it must be a whole number or null"),
    ("mode", "hires", "sdcli record field mode is 'hires'; it must be one of txt2img, img2img, inpaint, outpaint, "
                      "edit"),
    ("references", "in.png", "sdcli record field references is 'in.png'; it must be a list of text"),
    ("init", "in.png", "sdcli record field init is 'in.png'; it must be an object"),
    ("mode", "img2img", "sdcli record of a img2img image lacks init"),
])
def test_every_record_field_is_type_checked_before_loading(cli, tmp_path, field, value, says):
    image = forged(tmp_path / "f.png", {**GOOD, field: value})
    result = cli("replay", image, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == f"error: {image}: {says}"
    assert not (tmp_path / "out").exists()


def test_nested_part_fields_are_checked_too(cli, tmp_path):
    image = forged(tmp_path / "f.png", {**GOOD, "mode": "img2img", "init": {"image": "/x.png", "strength": "high"}})
    result = cli("replay", image)
    assert result.exit_code == 2
    assert "sdcli record field init.strength is 'high'; it must be a number" in result.stderr


@pytest.mark.parametrize(("model", "says"), [
    ("stabilityai/sd-turbo", "its model is the hub id 'stabilityai/sd-turbo'; sdcli does not download a model "
     "named by an image: pass --model stabilityai/sd-turbo (or --trust-metadata)"),
    ("models/tiny", "its model 'models/tiny' is a relative path"),
    ("./tiny", "its model './tiny' is a relative path, which sdcli does not resolve against the current folder"),
    ("/nonexistent/model", "its model /nonexistent/model was not found; pass --model"),
])
def test_models_named_by_an_image_are_not_loaded(cli, tmp_path, tiny_model, monkeypatch, model, says):
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")  # a relative path in the record must NOT find it
    shutil.copytree(tiny_model, tmp_path / "tiny")
    image = forged(tmp_path / "f.png", GOOD, model=model)
    result = cli("replay", image, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()
    ok = cli("replay", image, "-m", tiny_model, "-o", tmp_path / "out")
    assert ok.exit_code == 0, ok.stderr


def test_hub_id_with_trust_metadata_goes_to_the_hub(cli, tmp_path):
    image = forged(tmp_path / "f.png", GOOD, model="someone/some-model")
    result = cli("replay", image, "--trust-metadata", "--offline", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "someone/some-model is not in the local hub cache" in result.stderr  # tried the hub (offline here)


def test_input_images_in_a_record_must_be_absolute(cli, tmp_path):
    image = forged(tmp_path / "f.png", {**GOOD, "mode": "img2img", "init": {"image": "in.png"}})
    result = cli("replay", image)
    assert result.exit_code == 2 and "its image 'in.png' is a relative path" in result.stderr


def test_count_and_batch_size_are_capped_unless_given(cli, tmp_path, tiny_model):
    image = forged(tmp_path / "f.png", {**GOOD, "count": 100000, "batch_size": 64}, model=str(tiny_model))
    one = cli("replay", image, "-o", tmp_path / "a", "--json")
    assert one.exit_code == 0, one.stderr
    assert len(one.stdout.splitlines()) == 1
    two = cli("replay", image, "--count", "2", "-o", tmp_path / "b", "--json")
    assert [json.loads(line)["seed"] for line in two.stdout.splitlines()] == [3, 4]


def test_plan_shows_values_and_sources_and_lists_unhonoured_keys(cli, tmp_path, tiny_model):
    webui = tmp_path / "w.png"
    text = ("a castle\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: 9, Size: 32x32, Denoising strength: 0.5, "
            "Hires upscale: 2, ControlNet 0: \"Module: canny\", Model: x, Version: v1.9")
    forged(webui, infotext=text)
    result = cli("replay", webui, "-m", tiny_model, "--steps", "3", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"replaying {webui} (from its WebUI infotext):"
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.startswith("  ")}
    assert rows["model"][-1] == "[--model]" and rows["steps"][1:] == ["3", "[--steps]"]
    assert rows["seed"][1:] == ["9", "[WebUI", "infotext]"]
    assert rows["count"][1:] == ["1", "[one", "image", "unless", "--count]"]
    assert rows["prompt"][1] == "'a"
    warning = next(line for line in lines if line.startswith("warning:"))
    assert warning.endswith("ignored: ControlNet 0")  # the hires keys run the hires pass (core.hires)
    assert rows["hires.scale"][1:] == ["2.0", "[WebUI", "infotext]"]
    assert rows["hires.denoise"][1:] == ["0.5", "[WebUI", "infotext]"]


def test_unknown_record_keys_are_listed(cli, tmp_path, tiny_model):
    image = forged(tmp_path / "f.png", {**GOOD, "hires_fix": True}, model=str(tiny_model), extra=1)
    result = cli("replay", image, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert any(re.fullmatch(rf"  model +{re.escape(str(tiny_model))}  \[sdcli record\]", line)
               for line in result.stderr.splitlines())
    assert "ignored: sdcli record: hires_fix, sdcli record: extra" in result.stderr


def test_info_and_replay_escape_terminal_control_characters(cli, tmp_path, tiny_model):
    evil = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eabc"
    image = forged(tmp_path / "f.png", {**GOOD, "prompt": evil}, model=str(tiny_model),
                   infotext=f"{evil}\nSteps: 2, Seed: 3, Size: 32x32")
    for args in (("info", image), ("info", "--json", image), ("replay", image, "-o", tmp_path / "out")):
        result = cli(*args)
        for stream in (result.stdout, result.stderr):
            assert not any(c in stream for c in "\x1b\x07\x9b\u202e"), (args, stream)
    shown = cli("info", image).stdout
    assert shown.startswith("\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eabc")
    record = json.loads(cli("info", "--json", image).stdout)
    assert record["prompt"] == evil and record["schema"] == 1 and record["type"] == "info"


def test_info_goes_on_over_a_text_bomb_among_good_files(cli, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    good = forged(tmp_path / "good.png", infotext="fine\nSteps: 2, Seed: 3, Size: 32x32")
    bomb_info = PngInfo()
    bomb_info.add_text("parameters", "a" * (8 * 1024 * 1024), zip=True)  # 8 MiB of text in a few KiB of zTXt
    Image.new("RGB", (8, 8)).save(tmp_path / "bomb.png", pnginfo=bomb_info)
    result = cli("info", good, tmp_path / "bomb.png", good)
    assert result.exit_code == 3
    assert result.stdout.count("Seed: 3") == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bomb.png'}: not a readable image (Decompressed data too large for "
        "PngImagePlugin.MAX_TEXT_CHUNK)"]
