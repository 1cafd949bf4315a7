"""--tiling end to end: the flag on every generating command, info, replay, prompt files, X/Y/Z, no leaks."""

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import png_info, read_infotext
from tests.images import pixels

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = ("--steps", "3", "-W", "32", "-H", "32")


def seam(path) -> float:
    """The wrap seams against the image's own neighbouring columns and rows (about 1: it tiles)."""
    image = pixels(path).astype(float)
    across = np.abs(image[:, -1] - image[:, 0]).mean() / np.abs(np.diff(image, axis=1)).mean()
    down = np.abs(image[-1] - image[0]).mean() / np.abs(np.diff(image, axis=0)).mean()
    return (across + down) / 2


def one(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_generating_command_has_the_flag(cli):
    for command in ("txt2img", "img2img", "inpaint", "outpaint", "batch", "xyz"):
        assert "--tiling" in cli(command, "--help").stdout, command


def test_txt2img_tiling_info_and_replay(cli, tiny_model, tmp_path):
    tiled = one(cli, "txt2img", "a stone wall", "-m", tiny_model, "--steps", "3", "-W", "64", "-H", "64",
                "--seed", "1", "--batch-size", "4", "--tiling", "-o", tmp_path / "t")
    plain = one(cli, "txt2img", "a stone wall", "-m", tiny_model, "--steps", "3", "-W", "64", "-H", "64",
                "--seed", "1", "--batch-size", "4", "-o", tmp_path / "p")
    assert np.mean([seam(r["path"]) for r in tiled]) < 1.3 < 1.5 < np.mean([seam(r["path"]) for r in plain])
    first = tiled[0]["path"]
    assert "RNG: CPU, Tiling: True" in read_infotext(first) and "Tiling" not in read_infotext(plain[0]["path"])
    info = cli("info", "--json", first)
    assert json.loads(info.stdout)["parameters"]["Tiling"] == "True"
    again = one(cli, "replay", first, "-o", tmp_path / "r")[0]
    assert np.array_equal(pixels(again["path"]), pixels(first))
    webui = tmp_path / "webui.png"  # the infotext alone, as the WebUI would have written it
    Image.open(first).save(webui, pnginfo=png_info(read_infotext(first)))
    again = one(cli, "replay", webui, "--model", tiny_model, "-o", tmp_path / "r2")[0]
    assert np.array_equal(pixels(again["path"]), pixels(first)) and "Tiling: True" in again["infotext"]


def test_prompt_file_key_and_no_leak_into_the_next_line(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a wall", "tiling": true, "seed": 3}\n{"prompt": "a wall", "seed": 3}\n'
                       '{"prompt": "a wall", "tiling": "false", "seed": 3}\n')
    records = one(cli, "batch", prompts, "-m", tiny_model, *FAST, "-o", tmp_path / "b")
    fresh = one(cli, "txt2img", "a wall", "-m", tiny_model, *FAST, "--seed", "3", "-o", tmp_path / "f")[0]
    tiled = one(cli, "txt2img", "a wall", "-m", tiny_model, *FAST, "--seed", "3", "--tiling", "-o", tmp_path / "t")[0]
    assert np.array_equal(pixels(records[0]["path"]), pixels(tiled["path"]))
    assert "Tiling: True" in read_infotext(records[0]["path"])
    for later in records[1:]:  # the same loaded model, after a tiling line: as a fresh run
        assert np.array_equal(pixels(later["path"]), pixels(fresh["path"]))
    assert not np.array_equal(pixels(tiled["path"]), pixels(fresh["path"]))
    bad = tmp_path / "bad.txt"
    bad.write_text("--prompt 'a wall' --tiling maybe\n")
    result = cli("batch", bad, "-m", tiny_model, "-o", tmp_path / "bad")
    assert result.exit_code == 2 and f"{bad}:1: tiling: 'maybe' is not true/false" in result.stderr


def test_xyz_tiling_axis(cli, tiny_model, tmp_path):
    result = cli("xyz", "a wall", "-m", tiny_model, *FAST, "--seed", "3", "--x", "Tiling: False, True",
                 "-o", tmp_path / "x", "--json")
    assert result.exit_code == 0, result.stderr
    cells = [r["path"] for r in map(json.loads, result.stdout.splitlines()) if r["type"] == "item"]
    tiled = one(cli, "txt2img", "a wall", "-m", tiny_model, *FAST, "--seed", "3", "--tiling", "-o", tmp_path / "t")[0]
    assert "Tiling" not in read_infotext(cells[0]) and "Tiling: True" in read_infotext(cells[1])
    assert np.array_equal(pixels(cells[1]), pixels(tiled["path"]))
    assert "X Type: Tiling" in read_infotext(tmp_path / "x" / "xyz_grid-0000.png")
    bad = cli("xyz", "a wall", "-m", tiny_model, "--x", "Tiling: sometimes", "-o", tmp_path / "bad")
    assert bad.exit_code == 2 and "--x: Tiling: 'sometimes' is not true/false" in bad.stderr
