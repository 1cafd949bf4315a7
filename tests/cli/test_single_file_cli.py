"""Single-file checkpoints through the CLI: inpainting variants, errors naming the file."""

import json
import os
from pathlib import Path

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
    message = result.stderr.strip()
    assert message.startswith(f"error: --model: {vae_only}: not a checkpoint of a model family sdcli knows "
                              "(Stable Diffusion 1.x, Stable Diffusion 2.x, ")
    assert message.endswith("): none of their tensor names is in it (README: Model families)")
    assert "Flux.1 dev" in message and len(message.splitlines()) == 1
    assert not list(tmp_path.rglob("*.png"))


def test_a_pickle_checkpoint_needs_allow_pickle_then_matches_its_safetensors_twin(cli, tmp_path):
    import hashlib

    import torch
    from safetensors.torch import load_file

    single = build_tiny_single_file(tmp_path / "tiny.safetensors", arch="sd1")
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(single))}, ckpt)  # the old LDM layout: weights under state_dict
    args = ("a fox", "--steps", "2", "--seed", "3", "--json")

    refused = cli("txt2img", *args, "-m", ckpt, "-o", tmp_path / "no")
    assert refused.exit_code == 2 and "--allow-pickle" in refused.stderr and str(ckpt) in refused.stderr
    assert not (tmp_path / "no").exists()

    plain = json.loads(cli("txt2img", *args, "-m", single, "-o", tmp_path / "a").stdout)
    first = cli("txt2img", *args, "-m", ckpt, "--allow-pickle", "-o", tmp_path / "b")
    assert first.exit_code == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["model"] == "tiny" and record["model_hash"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()[:10]
    assert np.array_equal(np.asarray(Image.open(record["path"])), np.asarray(Image.open(plain["path"])))

    # Converted once: the second run reuses sdcli's safetensors copy untouched.
    converted = list((Path(os.environ["SDCLI_CACHE"]) / "converted").glob("*.safetensors"))
    assert len(converted) >= 1
    stamps = {p: p.stat().st_mtime_ns for p in converted}
    assert cli("txt2img", *args, "-m", ckpt, "--allow-pickle", "-o", tmp_path / "c").exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in converted} == stamps
