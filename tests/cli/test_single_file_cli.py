"""Single-file checkpoints through the CLI: inpainting variants, errors naming the file."""

import json

import numpy as np
from PIL import Image

from sdcli.models.tiny import build_tiny_single_file


def test_sd2_inpainting_single_file_inpaints_and_refuses_txt2img(cli, tmp_path):
    model = build_tiny_single_file(tmp_path / "sd2-inpainting.safetensors", arch="sd2-inpaint")
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "in.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 40))
    mask.save(tmp_path / "mask.png")
    result = cli("inpaint", "x", "-m", model, "-i", tmp_path / "in.png", "--mask", tmp_path / "mask.png",
                 "--steps", "2", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "sd2-inpainting" and "Model: sd2-inpainting" in record["infotext"]
    refused = cli("txt2img", "x", "-m", model, "-o", tmp_path / "t")
    assert refused.exit_code == 2 and "dedicated inpainting checkpoint" in refused.stderr


def test_a_safetensors_file_that_is_no_checkpoint_is_named(cli, tmp_path):
    import torch
    from safetensors.torch import save_file

    vae_only = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(vae_only))
    result = cli("txt2img", "x", "-m", vae_only, "-o", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --model: {vae_only}: not a Stable Diffusion 1.x, 2.x or XL "
                                     "checkpoint (no known text encoder keys such as cond_stage_model.* or "
                                     "conditioner.embedders.*)")
    assert not list(tmp_path.rglob("*.png"))
