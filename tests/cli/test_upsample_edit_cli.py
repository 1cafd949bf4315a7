"""`sdcli edit --upsample-prompt` (Flux.2 dev's caption upsampling with the reference images) from the command line
on the tiny model: the rewrite is diffusers' upsample_prompt with the reference (seeded by the image's seed), written
to the infotext, changes the edit, replays to the same text and pixels, and a prompt-file line and an X/Y/Z plot of
edits take it; a reference Mistral cannot take is refused in one line with exit code 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import quote
from tests.conditioning.test_flux2_upsample_edit import SEED, diffusers_edit_rewrite

RUN = ("--steps", "2", "--seed", str(SEED))
PROMPT = "make it blue"


def _pngs(out):
    return sorted(out.glob("*.png"))


def _pixels(png):
    return np.asarray(Image.open(png), dtype=np.int16)


@pytest.mark.slow
def test_an_edit_is_rewritten_with_its_reference_and_replays(cli, tiny_flux2_dev, tiny_flux2_dev_pipe, tmp_path):
    reference = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), "red").save(reference)
    edit = ("edit", "-m", tiny_flux2_dev, "-i", reference, *RUN)
    result = cli(*edit, "--upsample-prompt", "0.15", "-o", tmp_path / "up", PROMPT)
    assert result.exit_code == 0, result.stderr
    (png,) = _pngs(tmp_path / "up")
    infotext = Image.open(png).text["parameters"]
    rewritten = diffusers_edit_rewrite(tiny_flux2_dev_pipe.pipe, PROMPT, [Image.open(reference)], 0.15, SEED)
    assert infotext.startswith(PROMPT + "\n") and "Prompt upsampling: 0.15," in infotext
    assert f"Upsampled prompt: {quote(rewritten)}," in infotext and "Reference hashes: " in infotext
    # The rewrite changes the edit; replay writes the same text and pixels; a prompt file's line takes the key.
    result = cli(*edit, "-o", tmp_path / "plain", PROMPT)
    assert result.exit_code == 0, result.stderr
    assert not np.array_equal(_pixels(png), _pixels(_pngs(tmp_path / "plain")[0]))
    result = cli("replay", png, "-m", tiny_flux2_dev, "-o", tmp_path / "again")
    assert result.exit_code == 0, result.stderr
    (again,) = _pngs(tmp_path / "again")
    assert np.array_equal(_pixels(png), _pixels(again))
    assert Image.open(again).text["parameters"] == infotext
    lines = tmp_path / "p.txt"
    lines.write_text(f'--prompt "{PROMPT}" --reference_images "{reference}" --upsample_prompt 0.15\n')
    result = cli("batch", lines, "-m", tiny_flux2_dev, *RUN, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    (line_png,) = _pngs(tmp_path / "b")
    assert np.array_equal(_pixels(png), _pixels(line_png))
    # An X/Y/Z plot of edits: its 0.15 cell is the same image and infotext; its 0.6 cell another image.
    result = cli("xyz", "--edit", "-m", tiny_flux2_dev, "-i", reference, *RUN, "-o", tmp_path / "plot", PROMPT,
                 "--x", "Prompt upsampling: 0.15, 0.6")
    assert result.exit_code == 0, result.stderr
    first, second = sorted((tmp_path / "plot").glob("0*.png"))  # the cells (the grid beside them)
    assert np.array_equal(_pixels(png), _pixels(first)) and Image.open(first).text["parameters"] == infotext
    assert not np.array_equal(_pixels(first), _pixels(second))
    assert "Prompt upsampling: 0.6," in Image.open(second).text["parameters"]


def test_a_reference_of_one_vision_token_is_refused(cli, tiny_flux2_dev, tmp_path):
    """transformers' Mistral 3 fails on an image of one token (the tiny model's 32 px): one line naming --image."""
    reference = tmp_path / "small.png"
    Image.new("RGB", (32, 32), "red").save(reference)
    out = tmp_path / "out"
    result = cli("edit", "-m", tiny_flux2_dev, "-i", reference, *RUN, "--upsample-prompt", "0.15", "-o", out, PROMPT)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --image: 32x32 pixels is one token to Mistral's vision tower (32 px each), which cannot take it; "
        "give a larger reference image"]
    assert not out.exists()  # refused once the model is loaded: the output folder it made is removed again
