"""--vae (folder and WebUI single file), misfits, and the NaN guard (fp32 retry, --no-half-vae)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcli.errors import ModelError
from sdcli.models.tiny_assets import to_ldm_vae, write_tiny_vae
from sdcli.models.vae import guard_decode, set_vae

FAST = ("--steps", "2", "--width", "32", "--height", "32", "--seed", "3")


@pytest.fixture(scope="module")
def pipe(tiny_model):
    from tests.conftest import _load_on_cpu

    loaded = _load_on_cpu(tiny_model)
    yield loaded
    set_vae(loaded, None)


def pixels(pipe) -> np.ndarray:
    import torch

    out = pipe.pipe("a cat", num_inference_steps=2, width=32, height=32, output_type="np",
               generator=torch.Generator().manual_seed(1))
    return np.asarray(out.images)


def test_vae_files_and_folders(pipe, tiny_model, tmp_path):
    from safetensors.torch import save_file

    set_vae(pipe, None)
    base = pixels(pipe)
    own = tmp_path / "own.safetensors"  # the model's own VAE, in the WebUI's key layout
    save_file(to_ldm_vae(pipe.pipe.vae.state_dict(), 4), str(own))
    set_vae(pipe, own)
    assert np.array_equal(pixels(pipe), base)
    other_file = write_tiny_vae(tiny_model, tmp_path / "other.safetensors", seed=7)
    other_dir = write_tiny_vae(tiny_model, tmp_path / "other-dir", seed=7, layout="diffusers")
    set_vae(pipe, other_file)
    from_file = pixels(pipe)
    set_vae(pipe, other_dir)
    assert np.array_equal(pixels(pipe), from_file) and not np.array_equal(from_file, base)
    set_vae(pipe, None)
    assert np.array_equal(pixels(pipe), base)


def test_vae_of_the_wrong_shape_is_refused_by_name(pipe, tiny_model, tmp_path):
    wide = write_tiny_vae(tiny_model, tmp_path / "sdxl_vae.safetensors", scale_width=2)
    with pytest.raises(ModelError, match=r"--vae: .*sdxl_vae\.safetensors does not fit this model's VAE"):
        set_vae(pipe, wide)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(wide.read_bytes()[:-1000])
    with pytest.raises(ModelError, match=r"--vae: .*cut\.safetensors is truncated or corrupt"):
        set_vae(pipe, truncated)


@pytest.fixture
def nan_unless_fp32(monkeypatch):
    """The fp16 black-image failure, forced: the VAE decoder gives NaNs unless it runs in fp32."""
    import torch
    from diffusers.models.autoencoders.vae import Decoder

    real = Decoder.forward

    def forward(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        return out if out.dtype == torch.float32 else torch.full_like(out, float("nan"))

    monkeypatch.setattr(Decoder, "forward", forward)


def test_nan_decode_is_redone_in_fp32(tiny_model, nan_unless_fp32):
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_model / "vae").to(torch.bfloat16)
    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    assert torch.isnan(vae.decode(latents).sample).all()  # the failure is real
    notes = []
    guard_decode(vae, notes.append)
    image = vae.decode(latents).sample
    assert not torch.isnan(image).any() and vae.dtype == torch.bfloat16
    assert len(notes) == 1 and "gave NaNs" in notes[0] and "--no-half-vae" in notes[0]
    guard_decode(vae, notes.append, force_fp32=True)
    assert vae.dtype == torch.float32 and not torch.isnan(vae.decode(latents).sample).any() and len(notes) == 1


def test_cli_bf16_black_image_is_rescued_and_no_half_vae(cli, tiny_model, tmp_path, nan_unless_fp32):
    result = cli("txt2img", "x", "-m", tiny_model, "--dtype", "bf16", *FAST, "-o", tmp_path / "a")
    assert result.exit_code == 0, result.stderr
    assert "gave NaNs" in result.stderr
    image = np.asarray(Image.open(tmp_path / "a" / "00000-3.png"))
    assert image.max() > 0  # not the black image
    quiet = cli("txt2img", "x", "-m", tiny_model, "--dtype", "bf16", "--no-half-vae", *FAST, "-o", tmp_path / "b")
    assert quiet.exit_code == 0, quiet.stderr
    assert "NaN" not in quiet.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b" / "00000-3.png")), image)
