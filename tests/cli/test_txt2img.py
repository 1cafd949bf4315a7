import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext, read_infotext

FAST = ("--steps", "2", "--width", "32", "--height", "32")


def pngs(folder):
    return sorted(p.name for p in folder.glob("*.png")) if folder.exists() else []


def test_writes_png_with_infotext_and_prints_path(cli, tiny_model, tmp_path):
    result = cli("txt2img", "a lighthouse, at dusk", "-m", tiny_model, *FAST, "--seed", "42",
                 "-n", "fog", "--clip-skip", "2", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "00000-42.png")]
    prompt, negative, params = parse_infotext(read_infotext(tmp_path / "00000-42.png"))
    assert (prompt, negative) == ("a lighthouse, at dusk", "fog")
    assert params["Seed"] == "42" and params["Size"] == "32x32" and params["Clip skip"] == "2"
    assert params["Model"] == "tiny-sd1" and len(params["Model hash"]) == 10
    assert params["Sampler"] == "DPM++ 2M" and params["Schedule type"] == "Karras"
    assert "demo model" not in result.stderr


def test_json_records_and_running_numbers(cli, tiny_model, tmp_path):
    (tmp_path / "00007-1.png").write_bytes(b"existing")
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--seed", "3", "--batch-size", "2",
                 "--count", "2", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seed"] for r in records] == [3, 4, 5, 6]
    assert [r["path"].rsplit("/", 1)[1] for r in records] == [
        "00008-3.png", "00009-4.png", "00010-5.png", "00011-6.png"]
    assert records[0]["sampler"] == "DPM++ 2M" and records[0]["clip_skip"] == 1
    assert records[0]["device"] == "cpu" and records[0]["dtype"] == "fp32"
    assert (tmp_path / "00007-1.png").read_bytes() == b"existing"


def test_same_command_twice_gives_identical_pixels(cli, tiny_model, tmp_path):
    args = ("x", "-m", tiny_model, *FAST, "--seed", "11", "--name", "[seed]")
    assert cli("txt2img", *args, "-o", tmp_path / "a").exit_code == 0
    assert cli("txt2img", *args, "-o", tmp_path / "b").exit_code == 0
    a, b = (np.asarray(Image.open(tmp_path / d / "11.png")) for d in "ab")
    assert np.array_equal(a, b)


def test_name_pattern_never_overwrites(cli, tiny_model, tmp_path):
    args = ("x", "-m", tiny_model, *FAST, "--seed", "1", "--name", "[seed]-[sampler]", "-o", tmp_path)
    assert cli("txt2img", *args).exit_code == 0
    assert cli("txt2img", *args).exit_code == 0
    assert pngs(tmp_path) == ["1-DPM++ 2M-1.png", "1-DPM++ 2M.png"]


def test_random_seed_is_reported(cli, tiny_model, tmp_path):
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--seed", "-1", "-o", tmp_path, "--json")
    seed = json.loads(result.stdout)["seed"]
    assert seed >= 0 and f"seed {seed}" in result.stderr
    assert parse_infotext(read_infotext(pngs(tmp_path) and tmp_path / pngs(tmp_path)[0]))[2]["Seed"] == str(seed)


def test_sdcli_model_env_var_is_the_default(cli, tiny_model, tmp_path):
    result = cli("txt2img", "x", *FAST, "--seed", "1", "-o", tmp_path, "--json",
                 env={"SDCLI_MODEL": str(tiny_model)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny-sd1"


def test_prompt_option_equals_argument(cli, tiny_model, tmp_path):
    result = cli("txt2img", "--prompt", "a (cat:1.2)", "-m", tiny_model, *FAST, "-o", tmp_path, "--json")
    assert json.loads(result.stdout)["prompt"] == "a (cat:1.2)"


@pytest.mark.parametrize("args, message", [
    (("--width", "100"), "error: --width: 100 is not a multiple of 8"),
    (("--steps", "0"), "error: --steps: 0 is out of range"),
    (("--cfg-scale", "-2"), "error: --cfg-scale: -2.0 is negative"),
    (("--clip-skip", "13"), "error: --clip-skip: 13 is out of range; use 1 to 12"),
    (("--sampler", "Eular a"), "error: --sampler: unknown sampler 'Eular a'; did you mean 'Euler a'"),
    (("--device", "tpu"), "error: --device: unknown value 'tpu'"),
    (("--rng", "tpu"), "error: --rng: unknown value 'tpu'; choose from cpu, gpu, nv, comfy"),
    (("--emphasis", "loud"), "error: --emphasis: unknown value 'loud'"),
    (("--schedule", "kl-optimal", "--sampler", "DPM++ 2M Karras"), "error: --schedule: 'kl-optimal' conflicts"),
    (("--dtype", "fp16", "--device", "cpu"), "error: --dtype: fp16 is not supported on CPU"),
    (("--xformers", "--device", "cpu"), "error: --xformers:"),
    (("--steps", "many"), "error: Invalid value for '--steps'"),
    (("--name", "[bogus]"), "error: --name: unknown field [bogus]"),
    (("-m", "./no-such-model"), "error: --model: no such folder: ./no-such-model"),
    (("-m", "org/not-cached", "--offline"), "error: --model: org/not-cached is not in the local hub cache"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(cli, tiny_model, tmp_path, args, message):
    base = ["txt2img", "x", *FAST, "-o", tmp_path / "out"]
    if "-m" not in args:
        base += ["-m", str(tiny_model)]
    result = cli(*base, *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert pngs(tmp_path / "out") == []


def test_broken_model_folders_exit_2_naming_the_file(cli, tiny_model, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    unet = model / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(unet.read_bytes()[: unet.stat().st_size // 2])
    result = cli("txt2img", "x", "-m", model, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "unet/diffusion_pytorch_model.safetensors is truncated" in result.stderr
    assert pngs(tmp_path / "out") == []
    (tmp_path / "out").mkdir(exist_ok=True)  # refused runs create no output folder: make one
    not_model = cli("txt2img", "x", "-m", tmp_path / "out", *FAST, "-o", tmp_path / "out2")
    assert not_model.exit_code == 2 and "is not a diffusers model folder" in not_model.stderr


def test_unwritable_output_is_a_usage_error(cli, tiny_model, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path / "file" / "sub")
    assert result.exit_code == 2 and result.stderr.startswith("error: --output: cannot write to")


def test_runtime_failure_is_exit_1_and_debug_shows_traceback(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    def explode(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")
        yield  # pragma: no cover

    monkeypatch.setattr(generate, "run", explode)
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: RuntimeError: CUDA out of memory (simulated)")
    assert "Traceback" not in result.stderr
    debug = cli("--debug", "txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path)
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert pngs(tmp_path) == []


def test_interrupt_keeps_finished_images_and_exits_130(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    real_run = generate.run

    def interrupted(*args, **kwargs):
        for n, item in enumerate(real_run(*args, **kwargs)):
            if n == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(generate, "run", interrupted)
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--seed", "1", "--count", "3", "-o", tmp_path)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert pngs(tmp_path) == ["00000-1.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_malformed_prompt_warns_but_generates(cli, tiny_model, tmp_path):
    result = cli("txt2img", "a (cat", "-m", tiny_model, *FAST, "-o", tmp_path)
    assert result.exit_code == 0
    assert "note: prompt: unclosed '(' applies to the end of the prompt" in result.stderr
    assert len(pngs(tmp_path)) == 1


def test_long_prompt_text_past_token_77_changes_the_image(cli, tiny_model, tmp_path):
    base = "a red fox in the snow " * 6
    for end in ("dawn", "dusk"):
        # a high CFG scale: the tiny model's text conditioning moves pixels only a little
        assert cli("txt2img", base + end, "-m", tiny_model, *FAST, "--seed", "1", "--name", end,
                   "--cfg-scale", "40", "-o", tmp_path).exit_code == 0
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=np.int16) for n in ("dawn", "dusk"))
    assert np.abs(a - b).max() > 0  # cut at token 77, the two prompts would give the same pixels


@pytest.mark.parametrize("bad", [("-m", "/no/such/model"), ("--sampler", "Nope"), ("--steps", "0")])
def test_refused_runs_create_no_output_folder(cli, tmp_path, bad):
    result = cli("txt2img", "x", *bad, "-o", tmp_path / "new" / "out")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert not (tmp_path / "new").exists()


def test_webui_sampler_settings_reach_the_image_and_its_infotext(cli, tiny_model, tmp_path):
    result = cli("txt2img", "a (cat:1.2)", "-m", tiny_model, *FAST, "--seed", "5", "--sampler", "Euler a",
                 "--schedule", "align-your-steps", "--rng", "nv", "--eta", "0.5", "--ensd", "31337",
                 "--emphasis", "No norm", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    params = parse_infotext(read_infotext(tmp_path / "00000-5.png"))[2]
    assert {k: params[k] for k in ("Schedule type", "RNG", "Eta", "ENSD", "Emphasis")} == {
        "Schedule type": "Align Your Steps", "RNG": "NV", "Eta": "0.5", "ENSD": "31337", "Emphasis": "No norm"}
    assert cli("replay", tmp_path / "00000-5.png", "-o", tmp_path / "again").exit_code == 0
    again = np.asarray(Image.open(tmp_path / "again" / "00000-5.png"))
    assert np.array_equal(again, np.asarray(Image.open(tmp_path / "00000-5.png")))
