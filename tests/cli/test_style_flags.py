"""--style NAME / --styles FILE on the generating commands: the WebUI's styles.csv applied before the run."""

import json

import numpy as np
from PIL import Image

from sdcli.io.metadata import parse_infotext, read_infotext

FAST = ("--steps", "2", "--width", "32", "--height", "32", "--seed", "5", "--json")


def run(cli, *args):
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_style_flags_apply_the_webui_styles(cli, tiny_model, tmp_path):
    styles = tmp_path / "styles.csv"
    styles.write_text("name,prompt,negative_prompt\nwrap,\"masterpiece, {prompt}\",blurry\ntail,oil painting,\n")
    [styled] = run(cli, "txt2img", "a cat", "-m", tiny_model, *FAST, "--styles", styles, "--style", "wrap",
                   "--style", "tail", "-o", tmp_path / "a")
    prompt, negative, _ = parse_infotext(read_infotext(styled["path"]))
    assert (prompt, negative) == ("masterpiece, a cat, oil painting", "blurry")
    [by_hand] = run(cli, "txt2img", "masterpiece, a cat, oil painting", "-n", "blurry", "-m", tiny_model, *FAST,
                    "-o", tmp_path / "b")
    assert np.array_equal(np.asarray(Image.open(styled["path"])), np.asarray(Image.open(by_hand["path"])))
    webui = tmp_path / "webui"
    webui.mkdir()
    (webui / "styles.csv").write_text("name,prompt,negative_prompt\nsepia,sepia tones,\n")
    [from_webui] = run(cli, "txt2img", "a cat", "-m", tiny_model, *FAST, "--webui-dir", webui, "--style", "sepia",
                       "-o", tmp_path / "c")
    assert parse_infotext(read_infotext(from_webui["path"]))[0] == "a cat, sepia tones"


def test_unknown_style_and_bad_file_are_one_line_errors(cli, tiny_model, tmp_path):
    styles = tmp_path / "styles.csv"
    styles.write_text("name,prompt\nwrap,x\n")
    unknown = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--styles", styles, "--style", "nope", "-o", tmp_path)
    assert unknown.exit_code == 2 and "error: --style: no style named 'nope'; styles: 'wrap'" in unknown.stderr
    missing = cli("txt2img", "a cat", "-m", tiny_model, *FAST, "--styles", tmp_path / "no.csv", "-o", tmp_path)
    assert missing.exit_code == 2 and "--styles: " in missing.stderr and "no such file" in missing.stderr
    assert not list(tmp_path.glob("*.png"))
