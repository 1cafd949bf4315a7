"""Safe loading: pickles refused by default, weights-only under --allow-pickle (even with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set), no custom code from model_index.json."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from sdcli.errors import ModelError
from sdcli.models.safety import check_model_index, load_state_dict

FAST = ("--steps", "2", "--width", "32", "--height", "32")


class _Bomb:
    """Unpickling it creates a file: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_bomb(path, marker, zip_format: bool):
    import torch

    payload = {"state_dict": {"weight": _Bomb(marker)}}
    if zip_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.fixture(params=["zip", "legacy"])
def bomb(request, tmp_path):
    marker = tmp_path / "PWNED"
    return write_bomb(tmp_path / "evil.ckpt", marker, request.param == "zip"), marker


def test_pickles_are_refused_without_allow_pickle(bomb):
    path, marker = bomb
    with pytest.raises(ModelError, match=r"--lora: .*evil\.ckpt is a pickle file .* can run code .*safetensors"):
        load_state_dict(path, flag="--lora")
    assert not marker.exists()


def test_allow_pickle_uses_the_weights_only_loader_even_when_forced_off(bomb, monkeypatch):
    path, marker = bomb
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelError, match=r"refused by torch's weights-only loader"):
        load_state_dict(path, flag="--vae", allow_pickle=True)
    assert not marker.exists()
    import os

    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # restored


def test_allow_pickle_loads_plain_weights(tmp_path):
    import torch

    path = tmp_path / "ok.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_state_dict(path, flag="--vae", allow_pickle=True)["w"], torch.ones(2))


def test_old_torch_is_refused(tmp_path, monkeypatch):
    import torch

    from sdcli.errors import UsageError

    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2)}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(UsageError, match="--allow-pickle: torch 2.5.1 is too old"):
        load_state_dict(path, flag="--lora", allow_pickle=True)


@pytest.mark.parametrize("flag_args", [
    ("-m", "{bomb}"), ("--lora", "{bomb}"), ("--embedding", "{bomb}"), ("--vae", "{bomb}")])
@pytest.mark.parametrize("allow", [False, True])
def test_cli_never_runs_a_pickle(cli, tiny_model, tmp_path, flag_args, allow, monkeypatch):
    marker = tmp_path / "PWNED"
    path = write_bomb(tmp_path / "evil.pt", marker, zip_format=True)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    args = [a.format(bomb=path) for a in flag_args]
    model = [] if args[0] == "-m" else ["-m", tiny_model]
    result = cli("txt2img", "evil.pt prompt", *model, *args, *FAST, "-o", tmp_path / "out",
                 *(["--allow-pickle"] if allow else []))
    assert result.exit_code in (1, 2), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert not marker.exists()
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_model_index_naming_foreign_code_is_refused(cli, tiny_model, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    index = json.loads((model / "model_index.json").read_text())
    index["unet"] = ["my_module", "EvilUNet"]
    (model / "model_index.json").write_text(json.dumps(index))
    result = cli("txt2img", "x", "-m", model, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "component 'unet' is my_module.EvilUNet" in result.stderr
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]  # as real SD 1.5 folders
    check_model_index(model / "model_index.json", index)
    index["safety_checker"] = ["stable_diffusion_evil", "StableDiffusionSafetyChecker"]
    with pytest.raises(ModelError, match="component 'safety_checker' is stable_diffusion_evil"):
        check_model_index(model / "model_index.json", index)
    index["_class_name"] = ["pipeline", "MyPipeline"]
    with pytest.raises(ModelError, match="custom pipeline"):
        check_model_index(model / "model_index.json", index)


def test_the_bomb_is_real(bomb):
    """Guards the tests above: an unsafe load of the same file does create the marker."""
    import torch

    path, marker = bomb
    if path.read_bytes()[:2] == b"PK":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()
