import os
import subprocess
import sys
import time

import pytest

from sdcli import __version__

COMMANDS = ("txt2img", "img2img", "inpaint", "outpaint", "batch", "grid", "replay", "info", "samplers",
            "tiny")


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"sdcli {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and f"sdcli {command}" in result.stdout


def test_help_imports_no_heavy_library_and_is_fast():
    code = ("import sys, time; t=time.perf_counter(); import sdcli.cli; "
            "bad=[m for m in ('torch','diffusers','transformers','PIL') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sdcli", "--help"], capture_output=True, check=True)
    # The target is well under 0.5 s; the bound is loose for a loaded CI machine.
    assert time.perf_counter() - start < 2.0


def test_subprocess_demo_model_run(tmp_path):
    """A real process, no --model: builds the demo into the cache, says so, no bars when piped."""
    env = {**os.environ, "SDCLI_CACHE": str(tmp_path / "cache")}
    env.pop("SDCLI_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "sdcli", "txt2img", "demo", "--steps", "2", "--seed", "3", "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "o" / "00000-3.png")
    assert "RANDOM-WEIGHT demo model" in proc.stderr
    assert "\x1b[" not in proc.stderr and "━" not in proc.stderr, "no progress bar when not a terminal"
    assert (tmp_path / "cache" / "models" / "tiny-sd1-seed0" / "model_index.json").is_file()


def test_tiny_command(cli, tmp_path):
    result = cli("tiny", tmp_path / "t", "--seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert '"seed": 3' in result.stdout and (tmp_path / "t" / "unet" / "config.json").is_file()
    again = cli("tiny", tmp_path / "t")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_tiny_inpaint_writes_a_9_channel_inpainting_checkpoint(cli, tmp_path):
    import json

    result = cli("tiny", "--inpaint", tmp_path / "ti", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["arch"] == "sd1-inpaint"
    assert json.loads((tmp_path / "ti" / "unet" / "config.json").read_text())["in_channels"] == 9
    assert json.loads((tmp_path / "ti" / "model_index.json").read_text())["_class_name"] == \
        "StableDiffusionInpaintPipeline"


def test_samplers_command_lists_the_table(cli):
    import json

    result = cli("samplers", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"Euler", "Euler a", "DPM++ 2M", "DDIM"} <= {r["name"] for r in rows}
    assert {(r["schema"], r["type"]) for r in rows} == {(1, "sampler")}
    assert cli("samplers").exit_code == 0
