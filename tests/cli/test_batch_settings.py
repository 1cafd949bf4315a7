"""Prompt-file keys for the WebUI settings that change pixels: a line equals its single command."""

import json

import numpy as np
import pytest

from sdcli.batch.parse import BatchFileError, parse_file
from sdcli.io.metadata import read_infotext
from tests.images import pixels

pytestmark = pytest.mark.usefixtures("single_thread")

LINES = [  # (prompt-file keys, the same settings as flags)
    ("--sampler_name 'Euler a' --eta 0.7 --eta_noise_seed_delta 31337 --randn_source nv --emphasis 'No norm'",
     ("--sampler", "Euler a", "--eta", "0.7", "--ensd", "31337", "--rng", "nv", "--emphasis", "No norm")),
    ("--sampler Euler --s_churn 1 --s_tmin 0.2 --s_tmax 50 --s_noise 1.01 --sigma_min 0.1 --sigma_max 10",
     ("--sampler", "Euler", "--s-churn", "1", "--s-tmin", "0.2", "--s-tmax", "50", "--s-noise", "1.01",
      "--sigma-min", "0.1", "--sigma-max", "10")),
    ("--sampler DDIM --eta 0.5 --prediction_type v", ("--sampler", "DDIM", "--eta", "0.5", "--prediction-type", "v")),
]


def _batch(cli, prompts, model, tmp_path, *extra):
    result = cli("batch", prompts, "-m", model, "--seed", "5", "-o", tmp_path / "b", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_setting_keys_give_the_single_commands_pixels(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"--prompt 'a harbour' {keys}\n" for keys, _ in LINES))
    records = _batch(cli, prompts, tiny_model, tmp_path, "--steps", "3", "-W", "32", "-H", "32")
    plain = cli("txt2img", "a harbour", "-m", tiny_model, "--steps", "3", "-W", "32", "-H", "32", "--seed", "5",
                "-o", tmp_path / "plain", "--json")
    for n, (_, flags) in enumerate(LINES):
        single = cli("txt2img", "a harbour", *flags, "-m", tiny_model, "--steps", "3", "-W", "32", "-H", "32",
                     "--seed", str(5 + n), "-o", tmp_path / f"s{n}", "--json")
        assert single.exit_code == 0, single.stderr
        ours, theirs = json.loads(single.stdout), records[n]
        assert np.array_equal(pixels(ours["path"]), pixels(theirs["path"])), flags
        assert read_infotext(ours["path"]) == read_infotext(theirs["path"])
    assert "ENSD: 31337" in read_infotext(records[0]["path"]) and "RNG: NV" in read_infotext(records[0]["path"])
    assert not np.array_equal(pixels(records[0]["path"]), pixels(json.loads(plain.stdout)["path"]))


def test_refiner_keys_give_the_single_commands_pixels(cli, tiny_xl, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a lighthouse", "refiner_checkpoint": str(tiny_xl["refiner"]),
                                   "refiner_switch_at": 0.5}) + "\n")
    record = _batch(cli, prompts, tiny_xl["base"], tmp_path, "--steps", "4")[0]
    single = cli("txt2img", "a lighthouse", "-m", tiny_xl["base"], "--steps", "4", "--seed", "5", "--refiner",
                 tiny_xl["refiner"], "--refiner-switch", "0.5", "-o", tmp_path / "s", "--json")
    assert single.exit_code == 0, single.stderr
    assert np.array_equal(pixels(record["path"]), pixels(json.loads(single.stdout)["path"]))
    assert "Refiner switch at: 0.5" in read_infotext(record["path"])


def test_bad_setting_values_name_file_line_and_key(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt a --eta -1\n--prompt b --rng tpu --s_noise x\n--prompt c --refiner_switch_at 1.5\n"
                       "--prompt d --sigma_min 5 --sigma_max 2\n--prompt e --prediction_type x0\n")
    with pytest.raises(BatchFileError) as info:
        parse_file(prompts)
    assert info.value.problems == [
        f"{prompts}:1: eta: -1.0 is out of range; use 0 to 10",
        f"{prompts}:2: s_noise: 'x' is not a number",
        f"{prompts}:3: refiner_switch_at: 1.5 is out of range; use more than 0 and less than 1 (0.8 = the refiner "
        "runs the last 20% of the steps)",
        f"{prompts}:4: sigma_min: 5.0 is not below --sigma-max 2.0",
        f"{prompts}:5: prediction_type: unknown value 'x0'; choose from eps, v",
    ]


def test_an_unknown_refiner_checkpoint_names_its_line_before_anything_loads(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a: pytest.fail("a model was loaded"))
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt a\n--prompt b --refiner_checkpoint no-such-refiner.safetensors\n")
    result = cli("batch", prompts, "-m", tiny_model, "--steps", "2", "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert f"{prompts}:2: refiner_checkpoint: " in result.stderr and "no-such-refiner" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


def test_manifest_options_keep_their_recorded_order():
    from sdcli.cli.common import recorded_options

    options = {"file": "p.txt", "tiling": False, "steps": 2, "negative_prompt": "", "sampler": "Euler"}
    assert list(recorded_options(options)) == ["negative_prompt", "steps", "sampler", "file"]
    assert recorded_options({**options, "tiling": True})["tiling"] is True
