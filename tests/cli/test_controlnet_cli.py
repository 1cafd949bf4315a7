"""ControlNet from the command line: flags, models folder, `sdcli info`, pixel-exact replay, refusals."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from tests.images import pixels, pngs

FAST = ("--steps", "3", "--seed", "7", "-W", "64", "-H", "64")


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    """Tiny SD1 ControlNets written by `sdcli tiny --controlnet` (folder, single file), a WebUI models folder
    holding one, a SDXL ControlNet, a pickle-suffixed file and a control image."""
    from typer.testing import CliRunner

    from sdcli.cli import app

    root = tmp_path_factory.mktemp("cn-cli")
    runner = CliRunner()
    for args in (["tiny", "--controlnet", root / "cn"],
                 ["tiny", "--controlnet", "--single-file", root / "cn.safetensors"],
                 ["tiny", "--controlnet", "--arch", "sdxl", "--single-file", root / "cn-xl.safetensors"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.stderr
    (root / "models" / "ControlNet").mkdir(parents=True)
    shutil.copy(root / "cn.safetensors", root / "models" / "ControlNet" / "control_tiny.safetensors")
    (root / "cn.pth").write_bytes(b"not read")
    image = Image.new("RGB", (80, 64), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 56, 48), fill="black")
    image.save(root / "ctl.png")
    return root


def run_json(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tiny_controlnet_writes_a_folder_and_original_layout_file(cn):
    from safetensors import safe_open

    assert (cn / "cn" / "config.json").is_file() and (cn / "cn" / "diffusion_pytorch_model.safetensors").is_file()
    with safe_open(str(cn / "cn.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "control_model.input_hint_block.14.weight" in keys and "control_model.zero_convs.0.0.weight" in keys
    assert all(k.startswith("control_model.") for k in keys)


def test_txt2img_with_a_controlnet_by_name_info_and_replays_pixel_exactly(cli, tiny_model, cn, tmp_path):
    record = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, "--controlnet", "control_tiny",
                      "--models-dir", cn / "models", "--control-image", cn / "ctl.png", "--preprocessor", "canny",
                      "--control-weight", "0.8", "--control-end", "0.9", "--control-mode", "prompt",
                      "-o", tmp_path / "a")[0]
    plain = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, "-o", tmp_path / "plain")[0]
    assert not np.array_equal(pixels(record["path"]), pixels(plain["path"]))
    info = cli("info", record["path"], "--json")
    assert info.exit_code == 0, info.stderr
    params = json.loads(info.stdout)["parameters"]
    assert params["ControlNet 0"].startswith("Module: canny, Model: control_tiny [")
    assert ("Weight: 0.8, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100.0, "
            "Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 0.9, Pixel Perfect: False, "
            "Control Mode: My prompt is more important") in params["ControlNet 0"]
    # sdcli's own record: same pixels, nothing to pass.
    again = run_json(cli, "replay", record["path"], "-o", tmp_path / "b")[0]
    assert np.array_equal(pixels(again["path"]), pixels(record["path"]))
    # The WebUI infotext alone (no sdcli record): the unit is rebuilt from `ControlNet 0`; the model is found
    # by name in the ControlNet folder; the control image, which infotext does not store, is passed.
    webui = tmp_path / "webui.png"
    meta = PngInfo()
    meta.add_text("parameters", Image.open(record["path"]).info["parameters"])
    Image.open(record["path"]).save(webui, pnginfo=meta)
    missing = cli("replay", webui, "-m", tiny_model, "--models-dir", cn / "models", "-o", tmp_path / "c")
    assert missing.exit_code == 2 and "ControlNet 0 needs its control image" in missing.stderr
    from_infotext = run_json(cli, "replay", webui, "-m", tiny_model, "--models-dir", cn / "models",
                             "--control-image", cn / "ctl.png", "-o", tmp_path / "c")[0]
    assert np.array_equal(pixels(from_infotext["path"]), pixels(record["path"]))
    assert from_infotext["infotext"] == record["infotext"]


def test_infotext_model_names_are_never_paths(cli, tiny_model, cn, tmp_path, monkeypatch):
    record = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, "--controlnet", cn / "cn",
                      "--control-image", cn / "ctl.png", "-o", tmp_path / "a")[0]
    webui = tmp_path / "webui.png"
    meta = PngInfo()
    meta.add_text("parameters", record["infotext"])
    Image.open(record["path"]).save(webui, pnginfo=meta)
    monkeypatch.chdir(cn)  # a folder named like the unit's model is here: it must not be used
    result = cli("replay", webui, "-m", tiny_model, "--control-image", cn / "ctl.png", "-o", tmp_path / "b")
    assert result.exit_code == 2 and "--controlnet: 'cn [" in result.stderr and "is a model name" in result.stderr
    assert pngs(tmp_path / "b") == []


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_take_the_flags(cli, tiny_model, cn, tmp_path, mode):
    from tests.images import write_inputs

    image, mask = write_inputs(tmp_path, (64, 64))
    extra = ("--mask", mask) if mode == "inpaint" else ()
    base = (mode, "a box", "-m", tiny_model, "-i", image, *extra, *FAST)
    with_cn = run_json(cli, *base, "--controlnet", cn / "cn.safetensors", "--control-image", cn / "ctl.png",
                       "-o", tmp_path / "a")[0]
    without = run_json(cli, *base, "-o", tmp_path / "b")[0]
    assert not np.array_equal(pixels(with_cn["path"]), pixels(without["path"]))
    assert "ControlNet 0: " in with_cn["infotext"]


def test_two_units_from_the_command_line(cli, tiny_model, cn, tmp_path):
    record = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, "--controlnet", cn / "cn",
                      "--control-image", cn / "ctl.png", "--controlnet", cn / "cn.safetensors",
                      "--control-image", cn / "ctl.png", "--preprocessor", "canny", "--preprocessor", "scribble",
                      "--control-weight", "0.5", "-o", tmp_path)[0]
    assert "ControlNet 0: \"Module: canny, Model: cn [" in record["infotext"]
    assert "ControlNet 1: \"Module: scribble_xdog, Model: cn [" in record["infotext"]
    assert record["infotext"].count("Weight: 0.5") == 2
    assert [(u["module"], u["weight"], u["model"]) for u in record["controlnets"]] == [
        ("canny", 0.5, str(cn / "cn")), ("scribble_xdog", 0.5, str(cn / "cn.safetensors"))]


@pytest.mark.parametrize("args, message", [
    (("--control-image", "ctl.png"), "--control-image: a Stable Diffusion 1.x model takes no control image without "
                                     "--controlnet MODEL"),
    (("--control-image", "ctl.png", "--control-image", "ctl.png"), "--control-image: needs --controlnet MODEL"),
    (("--controlnet", "cn"), "--control-image: 0 given for 1 --controlnet"),
    (("--controlnet", "cn", "--control-image", "nope.png"), "nope.png: no such file"),
    (("--controlnet", "cn", "--control-image", "cn.pth"), "cn.pth is not a PNG, JPEG or WebP image"),
    (("--controlnet", "cn.pth", "--control-image", "ctl.png"), "cn.pth is a pickle file (.pth)"),
    (("--controlnet", "cn-xl.safetensors", "--control-image", "ctl.png"),
     "cn-xl.safetensors is a ControlNet for SDXL (UNet 8 wide), but the model is Stable Diffusion 1.x;"),
    (("--controlnet", "cn", "--control-image", "ctl.png", "--preprocessor", "openpose"),
     "--preprocessor: openpose needs the OpenPose body model"),
    (("--controlnet", "cn", "--control-image", "ctl.png", "--preprocessor", "sharpen"),
     "--preprocessor: unknown preprocessor 'sharpen'"),
    (("--controlnet", "cn", "--control-image", "ctl.png", "--control-start", "0.5", "--control-end", "0.5"),
     "--control-start: 0.5 is not below --control-end 0.5"),
    (("--controlnet", "missing", "--control-image", "ctl.png"), "--controlnet: no such file: missing"),
    (("--controlnet", "depth", "--control-image", "ctl.png", "--models-dir", "models"),
     "--controlnet: no controlnet named 'depth' in"),
])
def test_refusals_exit_2_with_one_line_and_write_nothing(cli, tiny_model, cn, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(cn)
    result = cli("txt2img", "a box", "-m", tiny_model, *FAST, *args, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert pngs(tmp_path / "out") == []


def test_pickle_controlnets_load_only_with_allow_pickle(cli, tiny_model, cn, tmp_path):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(cn / "cn.safetensors")), tmp_path / "cn.pth")
    refused = cli("txt2img", "a", "-m", tiny_model, *FAST, "--controlnet", tmp_path / "cn.pth",
                  "--control-image", cn / "ctl.png", "-o", tmp_path / "a")
    assert refused.exit_code == 2 and "cn.pth is a pickle file (.pth)" in refused.stderr
    allowed = run_json(cli, "txt2img", "a", "-m", tiny_model, *FAST, "--controlnet", tmp_path / "cn.pth",
                       "--control-image", cn / "ctl.png", "--allow-pickle", "-o", tmp_path / "b")[0]
    safe = run_json(cli, "txt2img", "a", "-m", tiny_model, *FAST, "--controlnet", cn / "cn.safetensors",
                    "--control-image", cn / "ctl.png", "-o", tmp_path / "c")[0]
    assert np.array_equal(pixels(allowed["path"]), pixels(safe["path"]))


def test_controlnet_is_not_sent_to_a_server(cli, cn, tmp_path):
    result = cli("txt2img", "a", "--server", "http://127.0.0.1:9", "--controlnet", cn / "cn", "--control-image",
                 cn / "ctl.png", "-o", tmp_path)
    assert result.exit_code == 2 and "--server: --controlnet units are not sent to a server" in result.stderr


def test_models_lists_controlnets_with_the_hash_the_infotext_records(cli, tiny_model, cn, tmp_path):
    listed = cli("models", "--models-dir", cn / "models", "--kind", "controlnet", "--json")
    assert listed.exit_code == 0, listed.stderr
    row = json.loads(listed.stdout)
    assert (row["kind"], row["name"]) == ("controlnet", "control_tiny") and len(row["hash"]) == 8
    record = run_json(cli, "txt2img", "a", "-m", tiny_model, *FAST, "--models-dir", cn / "models", "--controlnet",
                      "control_tiny", "--control-image", cn / "ctl.png", "-o", tmp_path)[0]
    assert f"Model: control_tiny [{row['hash']}]" in record["infotext"]


@pytest.mark.parametrize("unit, says", [
    ({"model": "cn", "image": "/x/ctl.png"}, "its ControlNet 'cn' is a relative path"),
    ({"model": "/x/cn", "image": "ctl.png"}, "its control-image 'ctl.png' is a relative path"),
    ({"model": "/x/cn", "image": "/x/c.png", "weight": "1"}, "sdcli record field controlnets[0].weight is '1'"),
    ({"model": "/x/cn", "image": "/x/c.png", "module": "openpose"}, "--preprocessor: openpose needs"),
])
def test_forged_records_cannot_point_controlnets_at_relative_paths(cli, cn, tmp_path, monkeypatch, unit, says):
    from tests.cli.test_replay_untrusted import GOOD, forged

    monkeypatch.chdir(cn)  # `cn` and `ctl.png` exist here
    image = forged(tmp_path / "f.png", {**GOOD, "controlnets": [unit]})
    result = cli("replay", image, "-o", tmp_path / "out")
    assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_folder_of_inputs_takes_the_units_each_equal_to_the_single_file_run(cli, tiny_model, cn, tmp_path):
    """img2img over a folder goes through the batch runner: the units load once and reach every input."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(2)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(inputs / f"{stem}.png")
    fast = FAST[:2] + FAST[4:]  # no --seed: given per run
    unit = ("--controlnet", cn / "cn.safetensors", "--control-image", cn / "ctl.png", "--preprocessor", "canny")
    folder_run = cli("img2img", "a box", "-m", tiny_model, "-i", inputs, *fast, "--seed", "5", *unit,
                     "-o", tmp_path / "out")
    assert folder_run.exit_code == 0, folder_run.stderr
    for i, stem in enumerate(("a", "b")):
        written = tmp_path / "out" / f"{stem}-{5 + i}.png"
        single = run_json(cli, "img2img", "a box", "-m", tiny_model, "-i", inputs / f"{stem}.png", *fast,
                          "--seed", 5 + i, *unit, "-o", tmp_path / f"single{i}")[0]
        assert np.array_equal(pixels(written), pixels(single["path"]))
        plain = run_json(cli, "img2img", "a box", "-m", tiny_model, "-i", inputs / f"{stem}.png", *fast,
                         "--seed", 5 + i, "-o", tmp_path / f"plain{i}")[0]
        assert not np.array_equal(pixels(written), pixels(plain["path"]))  # the unit was applied
        assert "ControlNet 0: \"Module: canny" in Image.open(written).info["parameters"]
    wrong = cli("img2img", "a box", "-m", tiny_model, "-i", inputs, *fast, "--controlnet", cn / "cn-xl.safetensors",
                "--control-image", cn / "ctl.png", "-o", tmp_path / "wrong")
    assert wrong.exit_code == 2 and "cn-xl.safetensors" in wrong.stderr
    assert not (tmp_path / "wrong").exists()


def test_hires_fix_takes_the_units_in_both_passes(cli, tiny_model, cn, tmp_path, monkeypatch):
    """Hr Option "Both": the units steer the hires pass too, at its size; weight 0 is plain hires fix."""
    hires = ("--hires", "--hires-scale", "1.5", "--hires-steps", "2", "--hires-upscaler", "Lanczos")
    unit = ("--controlnet", cn / "cn.safetensors", "--control-image", cn / "ctl.png", "--preprocessor", "canny")
    with_cn = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, *hires, *unit, "-o", tmp_path / "a")[0]
    plain = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, *hires, "-o", tmp_path / "b")[0]
    zero = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, *hires, *unit, "--control-weight", "0",
                    "-o", tmp_path / "c")[0]
    assert Image.open(with_cn["path"]).size == (96, 96)
    assert "Hires upscale: 1.5" in with_cn["infotext"] and "ControlNet 0: \"Module: canny" in with_cn["infotext"]
    assert not np.array_equal(pixels(with_cn["path"]), pixels(plain["path"]))
    assert np.array_equal(pixels(zero["path"]), pixels(plain["path"]))
    replayed = cli("replay", with_cn["path"], "-o", tmp_path / "r")
    assert replayed.exit_code == 0, replayed.stderr
    assert np.array_equal(pixels(replayed.stdout.strip()), pixels(with_cn["path"]))
    # The second pass really is steered: without its hook (first pass only) the pixels differ.
    from sdcli.execution.hires import HiresStage

    run = HiresStage.run
    monkeypatch.setattr(HiresStage, "run", lambda self, *a, **k: run(replace(self, control=None), *a, **k))
    first_only = run_json(cli, "txt2img", "a box", "-m", tiny_model, *FAST, *hires, *unit, "-o", tmp_path / "d")[0]
    assert not np.array_equal(pixels(first_only["path"]), pixels(with_cn["path"]))
    assert not np.array_equal(pixels(first_only["path"]), pixels(plain["path"]))
