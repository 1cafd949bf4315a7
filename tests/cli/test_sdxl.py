"""SDXL through every command: tiny base/refiner folders and single files, 2-4 steps at 64 px."""

import json

import numpy as np
import pytest
from PIL import Image

FAST = ("--steps", "2", "--seed", "5")


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def _run(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl-inputs")
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    Image.fromarray(gradient).save(root / "in.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(root / "mask.png")
    return root


def test_txt2img_folder_and_single_file_same_pixels_at_native_size(cli, tiny_xl, tmp_path):
    a = _run(cli, "txt2img", "a lighthouse", "-m", tiny_xl["base"], *FAST, "-o", tmp_path / "a")[0]
    b = _run(cli, "txt2img", "a lighthouse", "-m", tiny_xl["base_file"], *FAST, "-o", tmp_path / "b")[0]
    assert (a["width"], a["height"]) == (64, 64)  # the tiny model's native size (1024 for the real one)
    # Same weights; 8-bit conversion truncates as the WebUI does, so last-bit float differences in
    # loading may show as 1 level (rounding hid them).
    assert np.abs(px(a["path"]) - px(b["path"])).max() <= 1 and px(a["path"]).std() > 1
    assert b["model"] == "tiny-xl" and b["model_hash"] == __import__("hashlib").sha256(
        tiny_xl["base_file"].read_bytes()).hexdigest()[:10]


def test_prompt_and_negative_change_the_image_and_clip_skip_is_ignored_as_in_the_webui(cli, tiny_xl, tmp_path):
    base = _run(cli, "txt2img", "a lighthouse", "-m", tiny_xl["base"], *FAST, "-o", tmp_path / "a")[0]
    other = _run(cli, "txt2img", "a (lighthouse:1.5)", "-m", tiny_xl["base"], *FAST, "-o", tmp_path / "b")[0]
    negative = _run(cli, "txt2img", "a lighthouse", "-n", "fog", "-m", tiny_xl["base"], *FAST,
                    "-o", tmp_path / "c")[0]
    skip = _run(cli, "txt2img", "a lighthouse", "-m", tiny_xl["base"], *FAST, "--clip-skip", "2",
                "-o", tmp_path / "d")[0]
    assert not np.array_equal(px(base["path"]), px(other["path"]))
    assert not np.array_equal(px(base["path"]), px(negative["path"]))
    assert np.array_equal(px(base["path"]), px(skip["path"]))
    assert "Clip skip: 2" in skip["infotext"]


@pytest.mark.parametrize("mode", ["img2img", "inpaint", "outpaint"])
def test_image_modes_with_and_without_refiner(cli, tiny_xl, inputs, tmp_path, mode):
    extra = {"img2img": (), "inpaint": ("--mask", inputs / "mask.png"), "outpaint": ("--right", "16")}[mode]
    args = (mode, "a lighthouse", "-m", tiny_xl["base_file"], "-i", inputs / "in.png", *extra, "--steps", "4",
            "--seed", "1")
    record = _run(cli, *args, "-o", tmp_path / "plain")[0]
    assert record["mode"] == mode and px(record["path"]).std() > 1
    refined = _run(cli, *args, "--refiner", tiny_xl["refiner"], "-o", tmp_path / "refined")[0]
    assert "Refiner: tiny-xl-refiner [" in refined["infotext"]
    assert px(refined["path"]).shape == px(record["path"]).shape
    assert not np.array_equal(px(refined["path"]), px(record["path"]))


def test_sdxl_inpainting_checkpoint(cli, tiny_xl, inputs, tmp_path):
    from sdcli.models.tiny import build_tiny_single_file

    model = build_tiny_single_file(tmp_path / "xl-inpaint.safetensors", arch="sdxl-inpaint")
    record = _run(cli, "inpaint", "x", "-m", model, "-i", inputs / "in.png", "--mask", inputs / "mask.png",
                  "--steps", "4", "-o", tmp_path / "o")[0]
    assert px(record["path"]).shape == (64, 64, 3)
    refused = cli("txt2img", "x", "-m", model, "-o", tmp_path / "t")
    assert refused.exit_code == 2 and "txt2img needs a UNet with 4 input channels; this model's has 9" in refused.stderr


def test_refiner_records_webui_keys_and_replays(cli, tiny_xl, tmp_path):
    args = ("txt2img", "a lighthouse", "-m", tiny_xl["base"], "--steps", "4", "--seed", "7")
    plain = _run(cli, *args, "-o", tmp_path / "plain")[0]
    refined = _run(cli, *args, "--refiner", tiny_xl["refiner_file"], "--refiner-switch", "0.5",
                   "-o", tmp_path / "r")[0]
    digest = __import__("hashlib").sha256(tiny_xl["refiner_file"].read_bytes()).hexdigest()[:10]
    assert f"Refiner: tiny-xl-refiner [{digest}], Refiner switch at: 0.5" in refined["infotext"]
    assert not np.array_equal(px(plain["path"]), px(refined["path"]))
    again = _run(cli, "replay", refined["path"], "-o", tmp_path / "again")[0]
    assert np.array_equal(px(refined["path"]), px(again["path"]))
    assert again["infotext"] == refined["infotext"]


def test_refiner_alone_and_bad_refiner_settings_are_usage_errors(cli, tiny_xl, tiny_model, tmp_path):
    alone = cli("txt2img", "x", "-m", tiny_xl["refiner"], "-o", tmp_path)
    assert alone.exit_code == 2 and "cannot run txt2img; use it as --refiner" in alone.stderr
    switch = cli("txt2img", "x", "-m", tiny_xl["base"], "--refiner", tiny_xl["refiner"], "--refiner-switch", "1",
                 "-o", tmp_path)
    assert switch.exit_code == 2 and "--refiner-switch: 1.0 is out of range" in switch.stderr
    sd1 = cli("txt2img", "x", "-m", tiny_model, "--refiner", tiny_xl["refiner"], "-o", tmp_path)
    assert sd1.exit_code == 2 and sd1.stderr.strip() == (
        "error: --refiner: both the model and the refiner must be SDXL models (base or refiner); "
        "got Stable Diffusion 1.x and Stable Diffusion XL refiner")
    missing = cli("txt2img", "x", "-m", tiny_xl["base"], "--refiner", tmp_path / "nope", "-o", tmp_path)
    assert missing.exit_code == 2 and missing.stderr.startswith("error: --refiner:")
    assert not list(tmp_path.glob("*.png"))


def test_prediction_type_flag(cli, tiny_model, tmp_path):
    eps = _run(cli, "txt2img", "x", "-m", tiny_model, *FAST, "-W", "32", "-H", "32", "-o", tmp_path / "a")[0]
    v = _run(cli, "txt2img", "x", "-m", tiny_model, *FAST, "-W", "32", "-H", "32", "--prediction-type", "v",
             "-o", tmp_path / "b")[0]
    assert not np.array_equal(px(eps["path"]), px(v["path"]))
    bad = cli("txt2img", "x", "-m", tiny_model, "--prediction-type", "x0", "-o", tmp_path / "c")
    assert bad.exit_code == 2 and "--prediction-type: unknown value 'x0'; choose from eps, v" in bad.stderr


def test_sdxl_encoder_zeroes_an_empty_negative_and_pools_the_first_chunk(tiny_xl):
    import torch

    from sdcli.conditioning.sdxl import SDXLPromptEncoder
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    pipe = load_model(ModelRef(tiny_xl["base"], "xl"), plan_runtime(RuntimeOptions(), cuda=False, mps=False,
                                                                       xformers=False))
    pipe = pipe.pipe
    encoder = SDXLPromptEncoder(pipe, size=(64, 48))
    cond = encoder.encode("a lighthouse")
    embeds, added = cond.crossattn, cond.extra["added_cond_kwargs"]
    assert embeds.shape == (1, 77, 32 + 48) and added["text_embeds"].shape == (1, 48)
    assert added["time_ids"].tolist() == [[48, 64, 0, 0, 48, 64]]  # (height, width), crop, target size
    long_prompt = "a lighthouse " * 10  # > 75 tokens (the tiny tokenizer splits into characters): chunks
    kwargs = encoder.pipeline_embeds(long_prompt, "")
    chunks = kwargs["prompt_embeds"].shape[1] // 77
    assert chunks > 1
    assert kwargs["prompt_embeds"].shape == (1, 77 * chunks, 80) == kwargs["negative_prompt_embeds"].shape
    assert not kwargs["negative_prompt_embeds"].any() and not kwargs["negative_pooled_prompt_embeds"].any()
    # CLIP-L part: the penultimate layer, without the final layer norm.
    ids = pipe.tokenizer("a lighthouse", padding="max_length", max_length=77, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(embeds[..., :32], hidden, atol=1e-5)


def test_batch_with_sdxl_and_refiner(cli, tiny_xl, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse\n--prompt \"a boat\" --steps 3\n")
    result = cli("batch", prompts, "-m", tiny_xl["base_file"], "--refiner", tiny_xl["refiner"], "--steps", "2",
                 "--seed", "3", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    images = sorted((tmp_path / "out").glob("*.png"))
    assert len(images) == 2
    assert all("Refiner: tiny-xl-refiner [" in Image.open(p).info["parameters"] for p in images)
    bad = cli("batch", prompts, "-m", tiny_xl["base"], "--refiner", tmp_path / "missing", "-o", tmp_path / "o2")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --refiner:") and not (tmp_path / "o2").exists()


def test_tiny_cli_writes_single_files_of_every_family(cli, tmp_path):
    from sdcli.models.single_file import inspect

    for arch, inpaint in (("sdxl", True), ("sd2", False)):
        out = tmp_path / f"{arch}.safetensors"
        args = ("tiny", "--arch", arch, "--single-file", out, "--json", *(("--inpaint",) if inpaint else ()))
        record = json.loads(cli(*args).stdout)
        assert record["arch"] == arch + ("-inpaint" if inpaint else "") and record["bytes"] == out.stat().st_size
        detected = inspect(out)
        assert (detected.family.name, detected.inpainting) == (arch, inpaint)
    again = cli("tiny", "--arch", "sd2", "--single-file", tmp_path / "sd2.safetensors")
    assert again.exit_code == 2 and "already exists" in again.stderr
    folder = cli("tiny", "--single-file", tmp_path / "x.bin")
    assert folder.exit_code == 2 and "must end in .safetensors" in folder.stderr
