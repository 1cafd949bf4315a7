"""Scripting conventions: one-line parser errors, help that renders, stdin prompts, --quiet, pipes, warnings."""

import json
import os
import subprocess
import sys
import warnings

import pytest
from PIL import Image

from sdcli.io.metadata import png_info

FAST = ("--steps", "2", "--width", "32", "--height", "32", "--seed", "8")
COMMANDS = ("txt2img", "img2img", "inpaint", "outpaint", "batch", "grid", "replay", "info", "samplers", "tiny", "xyz")


@pytest.mark.parametrize("args", [("--bogus",), ("txt2img", "--steps", "abc", "x"), ("txt2img", "--bogus", "x"),
                                  ("bogus",), ("info",)])
def test_parser_errors_are_one_error_line_exit_2(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_option_with_help_brackets_and_flags_as_flags(cli, command):
    import typer.main

    from sdcli.cli import app

    group = typer.main.get_command(app)
    params = [p for p in group.commands[command].params if not getattr(p, "hidden", False)]
    missing = [p.name for p in params if not (getattr(p, "help", None) or "").strip()]
    assert missing == [], f"options without help: {missing}"
    shown = cli(command, "--help").stdout
    assert "<bool>" not in shown
    if command in ("txt2img", "batch", "replay"):
        assert "[num]" in shown and "[seed]" in shown and "[prompt_words]" in shown


def test_root_help_offers_shell_completion(cli):
    shown = cli("--help").stdout
    assert "--install-completion" in shown and "--show-completion" in shown and "<bool>" not in shown


def test_missing_prompt_on_txt2img_is_a_usage_error_unless_empty_is_asked(cli, tiny_model, tmp_path):
    refused = cli("txt2img", "-m", tiny_model, *FAST, "-o", tmp_path / "a")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == 'error: PROMPT: missing; give a prompt (or --prompt "" to generate without one)'
    assert not (tmp_path / "a").exists()
    empty = cli("txt2img", "--prompt", "", "-m", tiny_model, *FAST, "-o", tmp_path / "b")
    assert empty.exit_code == 0, empty.stderr


def test_dash_reads_the_prompt_or_the_prompt_file_from_stdin(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from sdcli.cli import app

    runner = CliRunner()
    one = runner.invoke(app, ["txt2img", "-", "-m", str(tiny_model), *FAST, "-o", str(tmp_path / "a"), "--json"],
                        input="a lighthouse, at dusk\n")
    assert one.exit_code == 0, one.stderr
    assert json.loads(one.stdout)["prompt"] == "a lighthouse, at dusk"
    batch = runner.invoke(app, ["batch", "-", "-m", str(tiny_model), *FAST, "-o", str(tmp_path / "b"), "--json"],
                          input="first\n--prompt second --steps 3\n")
    assert batch.exit_code == 0, batch.stderr
    assert [json.loads(line)["prompt"] for line in batch.stdout.splitlines()] == ["first", "second"]


def test_quiet_leaves_stderr_empty_on_success(cli, tiny_model, tmp_path):
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path, "--quiet")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.strip().endswith(".png")
    failing = cli("txt2img", "x", "-m", tiny_model, "--steps", "0", "-q")
    assert failing.stderr.startswith("error: --steps")


def test_library_warnings_are_hidden_unless_debug(cli, tmp_path, monkeypatch):
    import sdcli.io.replay as replay

    image = tmp_path / "w.png"
    Image.new("RGB", (8, 8)).save(image, pnginfo=png_info("x\nSteps: 2, Seed: 1, Size: 8x8"))
    real = replay.read_metadata

    def noisy(path):
        warnings.warn("invalid value encountered in cast", RuntimeWarning, stacklevel=1)  # as numpy says it
        return real(path)

    monkeypatch.setattr(replay, "read_metadata", noisy)
    for args, expected in ((("info", image), []), (("--debug", "info", image), ["invalid value encountered in cast"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cli(*args).exit_code == 0
        assert [str(w.message) for w in caught] == expected


def test_info_into_a_closed_pipe_exits_quietly(tmp_path):
    image = tmp_path / "w.png"
    Image.new("RGB", (8, 8)).save(image, pnginfo=png_info("x" * 5000 + "\nSteps: 2, Seed: 1, Size: 8x8"))
    code = (f"{sys.executable} -m sdcli info {' '.join([str(image)] * 200)} | head -c 10 >/dev/null; "
            "echo \"${PIPESTATUS[0]}\" >&2")
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stderr.strip() == "141", proc.stderr


def test_messages_print_emoji_codes_as_written(cli, tmp_path):
    """A path or prompt holding ":b:" (rich's code for an emoji) is shown as written in the error line."""
    result = cli("txt2img", "x", "-m", tmp_path / "no :b: model :smile:", *FAST, "-o", tmp_path / "out")
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert line.startswith("error: ") and "no :b: model :smile:" in line, line
    assert "\U0001f171" not in line and "\U0001f604" not in line
