"""`--upsample-prompt` (Flux.2 dev's caption upsampling) from the command line on the tiny model: each image's
prompt rewritten with its own seed (diffusers' upsample_prompt seeded alike), written to the infotext, the image
changed by it, replayed to the same pixels (alone, from a batch), the prompt-file key; refused in one line with exit
code 2, nothing written, on another family, for scheduled prompts, out of range, and for a text-encoder file without
its language-model head. With `sdcli edit`: tests/cli/test_upsample_edit_cli.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import quote
from tests.conditioning.test_flux2_upsample import diffusers_rewrite

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")


def _pngs(out):
    return sorted(out.glob("*.png"))


def _pixels(png):
    return np.asarray(Image.open(png), dtype=np.int16)


def test_each_image_is_rewritten_with_its_seed_and_replays(cli, tiny_flux2_dev, tiny_flux2_dev_pipe, tmp_path):
    model = ("-m", tiny_flux2_dev)
    result = cli("txt2img", *model, *RUN, "--batch-size", "2", "--upsample-prompt", "0.15", "-o", tmp_path / "up",
                 "a cat")
    assert result.exit_code == 0, result.stderr
    pngs = _pngs(tmp_path / "up")
    assert len(pngs) == 2
    for png, seed in zip(pngs, (3, 4), strict=True):
        infotext = Image.open(png).text["parameters"]
        rewritten = diffusers_rewrite(tiny_flux2_dev_pipe.pipe, "a cat", 0.15, seed)
        assert infotext.startswith("a cat\n") and "Prompt upsampling: 0.15," in infotext
        assert f"Upsampled prompt: {quote(rewritten)}," in infotext
    # The rewrite changes the image; the second image replays alone to the same pixels.
    result = cli("txt2img", *model, *RUN, "-o", tmp_path / "plain", "a cat")
    assert result.exit_code == 0, result.stderr
    assert not np.array_equal(_pixels(pngs[0]), _pixels(_pngs(tmp_path / "plain")[0]))
    result = cli("replay", pngs[1], *model, "-o", tmp_path / "again")
    assert result.exit_code == 0, result.stderr
    (again,) = _pngs(tmp_path / "again")
    assert np.array_equal(_pixels(pngs[1]), _pixels(again))
    assert Image.open(again).text["parameters"] == Image.open(pngs[1]).text["parameters"]
    # A prompt file's line takes the setting by its key (diffusers' name too).
    lines = tmp_path / "p.txt"
    lines.write_text('--prompt "a cat" --caption_upsample_temperature 0.15\n')
    result = cli("batch", lines, *model, *RUN, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    (line_png,) = _pngs(tmp_path / "b")
    assert np.array_equal(_pixels(pngs[0]), _pixels(line_png))


def _refused(cli, tmp_path, *args, message: str) -> None:
    out = tmp_path / "out"
    result = cli("txt2img", *args, *RUN, "-o", out)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--upsample-prompt", "0", "a cat"),
     "--upsample-prompt: 0 is out of range; use more than 0 and at most 2 (0.15 is diffusers' advice)"),
    (("--upsample-prompt", "0.15", "a [cat:dog:1]"),
     "--upsample-prompt: a Flux.2 dev model rewrites a plain prompt only (no prompt editing, alternation or AND)"),
])
def test_refused_on_flux2_dev(cli, tiny_flux2_dev, tmp_path, args, message):
    _refused(cli, tmp_path, "-m", tiny_flux2_dev, *args, message=message)


def test_refused_on_other_families(cli, tiny_flux2, tmp_path):
    _refused(cli, tmp_path, "-m", tiny_flux2, "--upsample-prompt", "0.15", "a cat",
             message="--upsample-prompt: Flux.2 klein models do not rewrite prompts; it applies to Flux.2 dev")


def test_a_text_encoder_file_is_refused_by_name(cli, tiny_flux2_dev_pipe, tmp_path):
    """ComfyUI's Mistral file holds the text model alone: no language-model head, nothing to write with."""
    from sdcli.models.flux2_files import write_flux2_files

    files = write_flux2_files(tiny_flux2_dev_pipe.pipe, tmp_path / "files", "comfy", "F32")
    _refused(cli, tmp_path, "-m", files["transformer"], "--text-encoder", files["mistral3"], "--vae", files["vae"],
             "--upsample-prompt", "0.15", "a cat",
             message=f"--upsample-prompt: {files['mistral3'].name}: a text-encoder file loads without its "
             "language-model head (nothing to write with); caption upsampling needs a diffusers folder's text encoder")
