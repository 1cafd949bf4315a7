"""ControlNet files: every layout sdcli reads gives the folder's weights; checks before loading."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdcli.controlnet.files import build_tiny_controlnet, find_controlnet, load_controlnet
from sdcli.errors import ModelError, UsageError
from sdcli.models.folders import Library
from sdcli.models.hashes import legacy_hash


def model_of(arch):
    """What load_controlnet reads of a loaded model: its family and its pipeline's UNet."""
    from types import SimpleNamespace

    from diffusers import UNet2DConditionModel

    from sdcli.families import FAMILIES
    from sdcli.models.tiny import ARCHES

    return SimpleNamespace(family=FAMILIES[arch], pipe=SimpleNamespace(unet=UNet2DConditionModel(**ARCHES[arch].unet)))


def weights(path, arch):
    return load_controlnet(find_controlnet(str(path), Library({}), False), model_of(arch)).state_dict()


@pytest.mark.parametrize("arch", ["sd1", "sd2"])
def test_original_layout_with_and_without_prefix_and_diffusers_file_equal_the_folder(tmp_path, arch):
    folder = weights(build_tiny_controlnet(tmp_path / "cn", arch), arch)
    original = build_tiny_controlnet(tmp_path / "cn.safetensors", arch, single_file=True)
    state = load_file(str(original))
    assert all(k.startswith("control_model.") for k in state)
    save_file({k.removeprefix("control_model."): v for k, v in state.items()}, str(tmp_path / "bare.safetensors"))
    save_file(load_file(str(tmp_path / "cn" / "diffusion_pytorch_model.safetensors")), str(tmp_path / "d.safetensors"))
    for file in (original, tmp_path / "bare.safetensors", tmp_path / "d.safetensors"):
        loaded = weights(file, arch)
        assert loaded.keys() == folder.keys() and all(torch.equal(loaded[k], folder[k]) for k in folder), file


def test_checks_before_loading(tmp_path):
    cn = build_tiny_controlnet(tmp_path / "cn.safetensors", "sd1", single_file=True)
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(cn.read_bytes()[:-10])
    with pytest.raises(ModelError, match="--controlnet: .*short.safetensors is truncated or corrupt"):
        find_controlnet(str(truncated), Library({}), False)
    with pytest.raises(ModelError, match="--controlnet: .*x.pth is a pickle file"):
        (tmp_path / "x.pth").write_bytes(b"\x80")
        find_controlnet(str(tmp_path / "x.pth"), Library({}), False)
    with pytest.raises(UsageError, match=r"'cn \[0123abcd\]' is a model name; no models folder is set"):
        find_controlnet("cn [0123abcd]", Library({}), False)  # a WebUI title is a name, never a path
    found = find_controlnet(str(cn), Library({}), False)
    assert found.title == f"cn [{legacy_hash(cn)}]" and len(found.hash) == 8


def test_a_checkpoint_is_not_a_controlnet(tmp_path):
    from sdcli.models.tiny import build_tiny_single_file

    model = build_tiny_single_file(tmp_path / "m.safetensors")
    with pytest.raises(ModelError, match="m.safetensors is not a ControlNet"):
        weights(model, "sd1")
