"""SD3: detection, the tiny model end to end, single-file round trip, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from sdcli.families import FAMILIES, detect_folder, detect_single_file


def test_folder_and_single_file_detection(tiny_sd3, tmp_path):
    from sdcli.models.header import read_header
    from sdcli.models.tiny import build_tiny_single_file

    assert detect_folder(tiny_sd3).family is FAMILIES["sd3"]
    path = build_tiny_single_file(tmp_path / "sd3.safetensors", arch="sd3")
    shapes, _ = read_header(path)
    detected = detect_single_file(shapes)
    assert detected.family is FAMILIES["sd3"] and detected.in_channels == 16
    bare = {k.removeprefix("model.diffusion_model."): v for k, v in shapes.items() if k.startswith("model.")}
    with pytest.raises(Exception, match="without its text encoders"):
        detect_single_file(bare)


def test_single_file_gives_the_folder_pixels_and_refusals(cli, tiny_sd3, tmp_path):
    from PIL import Image

    from sdcli.models.tiny import build_tiny_single_file

    single = build_tiny_single_file(tmp_path / "sd3.safetensors", arch="sd3")
    images = []
    for model, out in ((tiny_sd3, tmp_path / "a"), (single, tmp_path / "b")):
        result = cli("txt2img", "-m", model, "--steps", "2", "--seed", "3", "-n", "blurry", "-o", out, "a red cat")
        assert result.exit_code == 0, result.output
        images.append(np.asarray(Image.open(next(out.glob("*.png")))))
    assert np.array_equal(images[0], images[1])
    text = Image.open(next((tmp_path / "a").glob("*.png"))).info["parameters"]
    assert "CFG scale: 4.5" in text and "Schedule type: SGM Uniform" in text
    result = cli("txt2img", "-m", tiny_sd3, "--steps", "2", "--sampler", "DDIM", "-o", tmp_path / "c", "x")
    assert result.exit_code == 2 and "--sampler" in result.output and "SD3" in result.output
    assert not (tmp_path / "c").exists()
