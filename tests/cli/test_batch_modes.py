"""Batch lines in every mode: each image equals the one its own command makes."""

import json

import numpy as np
import pytest

from sdcli.batch.parse import parse_file
from tests.images import pixels, write_inputs

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_batch_mixing_all_modes_matches_the_single_commands(cli, tiny_model, tmp_path):
    image, mask = write_inputs(tmp_path)
    prompts = tmp_path / "p.txt"
    prompts.write_text(
        "--prompt 'a harbour' --width 32 --height 32\n"
        "--prompt 'an oil painting' --init_image in.png --denoising_strength 0.6\n"
        "--prompt 'a cat' --init_image in.png --mask mask.png --mask_blur 0 --inpainting_fill 0\n"
        "--prompt 'a wide beach' --init_image in.png --left 16 --fill blur\n"
    )
    result = cli("batch", prompts, "-m", tiny_model, "--steps", "2", "--seed", "5", "-o", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.stderr
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert len(paths) == 4
    singles = [
        ("txt2img", "a harbour", "-W", "32", "-H", "32"),
        ("img2img", "an oil painting", "-i", image, "--strength", "0.6"),
        ("inpaint", "a cat", "-i", image, "--mask", mask, "--mask-blur", "0", "--masked-content", "fill"),
        ("outpaint", "a wide beach", "-i", image, "--left", "16", "--fill", "blur"),
    ]
    for n, (command, prompt, *args) in enumerate(singles):
        single = cli(command, prompt, *args, "-m", tiny_model, "--steps", "2", "--seed", str(5 + n),
                     "-o", tmp_path / command, "--json")
        assert single.exit_code == 0, single.stderr
        assert np.array_equal(pixels(paths[n]), pixels(json.loads(single.stdout)["path"])), command
    assert pixels(paths[3]).shape == (40, 64, 3), "outpaint grew the canvas"


def test_webui_codes_and_names_for_image_settings(tmp_path):
    write_inputs(tmp_path)
    prompts = tmp_path / "p.txt"
    prompts.write_text(
        "--prompt a --init_image in.png --mask mask.png --inpainting_fill 2 --inpaint_full_res 1 "
        "--inpaint_full_res_padding 16 --resize_mode 1 --inpainting_mask_invert 1\n"
        "--prompt b --image in.png --resize fill\n"
        "--prompt c --init_image in.png --up 8 --mode outpaint\n"
    )
    a, b, c = (line.request for line in parse_file(prompts))
    assert (a.mode, a.inpaint.masked_content, a.inpaint.area, a.inpaint.padding, a.init.resize,
            a.inpaint.invert_mask) == ("inpaint", "latent-noise", "masked", 16, "crop", True)
    assert b.mode == "img2img" and b.init.resize == "fill"
    assert c.mode == "outpaint" and c.outpaint.up == 8 and c.inpaint.mask_blur == 8, "outpaint's mask blur default"


def test_settings_of_another_mode_are_refused_by_line(tmp_path):
    from sdcli.batch.parse import BatchFileError

    write_inputs(tmp_path)
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt b --image in.png --masked_content fill\n--prompt c --left 8\n")
    with pytest.raises(BatchFileError) as info:
        parse_file(prompts)
    assert info.value.problems == [f"{prompts}:1: masked_content: not used by img2img lines",
                                   f"{prompts}:2: mode outpaint needs init_image"]
