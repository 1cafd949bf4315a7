"""--format png|jpeg|webp: the WebUI infotext in EXIF UserComment, read back by info and replay."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext, read_replay_record

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = ("--steps", "2", "--width", "32", "--height", "32", "--seed", "21")


@pytest.mark.parametrize(("fmt", "suffix", "pil"), [("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")])
def test_jpeg_and_webp_carry_the_infotext_as_the_webui_writes_it_and_replay(cli, tiny_model, tmp_path, fmt, suffix,
                                                                            pil):
    made = cli("txt2img", "a fox, é 猫", "-n", "blur", "-m", tiny_model, *FAST, "--format", fmt, "--quality", "95",
               "-o", tmp_path / "a", "--json")
    assert made.exit_code == 0, made.stderr
    path = json.loads(made.stdout)["path"]
    assert path.endswith("00000-21" + suffix)
    with Image.open(path) as im:
        assert im.format == pil
        comment = im.getexif().get_ifd(0x8769)[0x9286]
    assert comment.startswith(b"UNICODE\x00") and comment[8:].decode("utf-16-be").startswith("a fox, é 猫\nNegative")
    assert read_infotext(path).splitlines()[0] == "a fox, é 猫"
    assert read_replay_record(path)["request"]["prompt"] == "a fox, é 猫"
    info = json.loads(cli("info", "--json", path).stdout)
    assert info["parameters"]["Seed"] == "21" and info["sdcli"]["request"]["negative_prompt"] == "blur"
    again = cli("replay", path, "--format", fmt, "--quality", "95", "-o", tmp_path / "b", "--json")
    assert again.exit_code == 0, again.stderr
    twin = json.loads(again.stdout)["path"]
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(twin)))


def test_quality_changes_the_file_and_bad_values_are_usage_errors(cli, tiny_model, tmp_path):
    sizes = {}
    for quality in ("10", "100"):
        result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--format", "jpeg", "--quality", quality,
                     "-o", tmp_path / quality, "--json")
        sizes[quality] = os.path.getsize(json.loads(result.stdout)["path"])
    assert sizes["10"] < sizes["100"]
    for args, says in ((("--format", "gif"), "--format: unknown format 'gif'; choose from png, jpeg, webp"),
                       (("--quality", "0"), "--quality: 0 is out of range; use 1 to 100")):
        bad = cli("txt2img", "x", "-m", tiny_model, *args, "-o", tmp_path / "bad")
        assert bad.exit_code == 2 and bad.stderr.strip() == f"error: {says}"
    assert not (tmp_path / "bad").exists()


def test_batch_writes_the_chosen_format_and_resume_finds_it(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    first = cli("batch", prompts, "-m", tiny_model, *FAST, "--format", "webp", "-o", tmp_path / "out")
    assert first.exit_code == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.webp")) == ["00000-21.webp", "00001-22.webp"]
    changed = cli("batch", "--resume", "-o", tmp_path / "out", "--format", "png")
    assert changed.exit_code == 2 and "--format: webp in the manifest, png now" in changed.stderr
