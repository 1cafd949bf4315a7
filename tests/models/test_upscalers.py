"""models.upscalers: the name table, the models-folder lookup, spandrel loading of a tiny ESRGAN, tiling."""

import sys

import numpy as np
import pytest
from PIL import Image

from sdcli.errors import ModelError, UsageError
from sdcli.models import upscalers
from sdcli.models.folders import library_from
from sdcli.models.tiny_assets import write_tiny_upscaler


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    root = tmp_path_factory.mktemp("esrgan")
    return {scale: write_tiny_upscaler(root / f"tiny-{scale}x.safetensors", scale=scale) for scale in (2, 4)}


def noise_image(w, h, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_builtin_names_any_case_and_kinds():
    assert upscalers.resolve_upscaler("latent (Nearest-Exact)", "--x") == upscalers.UpscalerRef(
        "Latent (nearest-exact)", "latent")
    assert upscalers.resolve_upscaler("lanczos", "--x").kind == "pil"
    assert set(upscalers.LATENT_MODES) == {"Latent", "Latent (antialiased)", "Latent (bicubic)",
                                           "Latent (bicubic antialiased)", "Latent (nearest)",
                                           "Latent (nearest-exact)"}
    with pytest.raises(UsageError, match="--hires-upscaler: 'Bogus' is neither an upscaler"):
        upscalers.resolve_upscaler("Bogus", "--hires-upscaler")


def test_spandrel_detects_the_tiny_esrgan_without_torchvision(esrgan):
    for scale, path in esrgan.items():
        up = upscalers.ready(upscalers.resolve_upscaler(str(path), "--upscaler"), "--upscaler")
        assert up.ref.name == f"tiny-{scale}x" and up.model.architecture.name == "ESRGAN"
        assert up.model.scale == scale
    left = [name for name in sys.modules if name.startswith("torchvision")]
    assert not left or _real_torchvision()  # the placeholders were removed after `import spandrel`


def _real_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def test_placeholders_raise_a_clear_error():
    functional = upscalers._torchvision_placeholders()["torchvision.transforms.functional"]
    with pytest.raises(RuntimeError, match="LaMa and RestoreFormer"):
        functional.rotate(None, 90)


def test_model_upscale_sizes_and_deterministic_pixels(esrgan):
    up = upscalers.ready(upscalers.resolve_upscaler(str(esrgan[4]), "--upscaler"), "--upscaler")
    image = noise_image(40, 24)
    out = up.upscale(image, 4)
    assert out.size == (160, 96)
    assert np.array_equal(np.asarray(out), np.asarray(up.upscale(image, 4)))
    assert up.upscale(image, 2).size == (80, 48)  # one 4x step, then Lanczos down to 2x (the WebUI's)
    assert up.upscale(noise_image(33, 33), 2).size == (64, 64)  # floored to a multiple of 8
    assert np.asarray(out).std() > 5  # not a flat image
    two = upscalers.ready(upscalers.resolve_upscaler(str(esrgan[2]), "--upscaler"), "--upscaler")
    assert two.upscale(image, 4).size == (160, 96)  # two 2x steps


def test_tiles_cover_large_images_and_match_one_tile_away_from_seams(esrgan):
    up = upscalers.ready(upscalers.resolve_upscaler(str(esrgan[4]), "--upscaler"), "--upscaler")
    image = noise_image(60, 50)
    whole = np.asarray(upscalers._model_patch(up.model, image), dtype=np.int16)  # no tiles
    tiled = np.asarray(upscalers.run_tiled(up.model, image, tile=32, overlap=8), dtype=np.int16)
    assert whole.shape == tiled.shape == (200, 240, 3)
    # The first tile's corner is the same computation either way (out of the reach of its far edges).
    assert np.abs(whole[:32, :32] - tiled[:32, :32]).max() <= 1
    assert np.abs(whole - tiled).max() > 1  # tiles do differ near their seams
    assert upscalers._starts(600, 192, 8) == [0, 136, 272, 408]  # evenly spread, the last flush with the end
    assert upscalers._starts(100, 192, 8) == [-92]  # shorter than a tile: padded, as in the WebUI


def test_pickle_upscalers_are_refused_without_allow_pickle(tmp_path, esrgan):
    import torch
    from safetensors.torch import load_file

    path = tmp_path / "4x-old.pth"
    torch.save(load_file(str(esrgan[4])), path)
    with pytest.raises(ModelError, match=r"--hires-upscaler: .*4x-old.pth is a pickle file"):
        upscalers.resolve_upscaler(str(path), "--hires-upscaler")
    ref = upscalers.resolve_upscaler(str(path), "--hires-upscaler", allow_pickle=True)
    assert upscalers.ready(ref, "--hires-upscaler", allow_pickle=True).model.scale == 4
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        upscalers.resolve_upscaler(str(tmp_path / "junk.safetensors"), "--upscaler")


def test_not_an_upscaler_is_a_clear_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    ref = upscalers.resolve_upscaler(str(tmp_path / "other.safetensors"), "--upscaler")
    with pytest.raises(ModelError, match="not an upscaler architecture spandrel knows"):
        upscalers.ready(ref, "--upscaler")


def test_names_in_the_models_folder_esrgan(tmp_path, esrgan):
    folder = tmp_path / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    (folder / "4x-Tiny.safetensors").write_bytes(esrgan[4].read_bytes())
    library = library_from(tmp_path / "models", None)
    assert [(e.kind, e.name) for e in library.entries("upscaler")] == [("upscaler", "4x-Tiny")]  # sdcli models
    ref = upscalers.resolve_upscaler("4x-Tiny", "--hires-upscaler", library)
    assert ref.kind == "model" and ref.name == "4x-Tiny" and ref.path == str(folder / "4x-Tiny.safetensors")
    with pytest.raises(UsageError, match="--hires-upscaler: no upscaler named '8x-Missing'"):
        upscalers.resolve_upscaler("8x-Missing", "--hires-upscaler", library)
