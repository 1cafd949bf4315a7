"""WebUI single-file checkpoints: offline loading, same weights as the folder, model hash and its cache."""

import hashlib
import os
import socket

import pytest

from sdcli.errors import ModelError
from sdcli.models.resolve import ModelRef, resolve_model
from sdcli.models.runtime import RuntimeOptions, plan_runtime
from sdcli.models.tiny import build_tiny, build_tiny_single_file

PLAN = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any socket connection fails, hub offline mode is off, and the hub cache is empty."""
    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Offline mode off, so a hub call would really try the network (and fail loudly here).
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("SDCLI_CACHE", str(tmp_path / "empty-sdcli-cache"))  # configs written afresh


def _state(pipe):
    parts = ("unet", "vae", "text_encoder", "text_encoder_2")
    return {f"{p}.{k}": v for p in parts if getattr(pipe, p, None) is not None
            for k, v in getattr(pipe, p).state_dict().items()}


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sd1-inpaint", "sdxl", "sdxl-refiner", "sdxl-inpaint"])
def test_tiny_single_file_loads_offline_with_the_folders_weights(arch, tmp_path, no_network):
    import torch

    from sdcli.models.loader import load_model

    file = build_tiny_single_file(tmp_path / f"{arch}.safetensors", arch=arch)
    folder = build_tiny(tmp_path / arch, arch=arch)
    ref = resolve_model(str(file))
    assert (ref.kind, ref.name, ref.family) == ("single-file", arch, arch.removesuffix("-inpaint"))
    from_file = load_model(ref, PLAN).pipe
    from_folder = load_model(ModelRef(folder, arch), PLAN).pipe
    assert type(from_file) is type(from_folder)
    a, b = _state(from_file), _state(from_folder)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert from_file.scheduler.config.prediction_type == from_folder.scheduler.config.prediction_type
    assert from_file.unet.config.in_channels == (9 if arch.endswith("inpaint") else 4)


def test_same_pixels_from_the_single_file_and_the_folder(tiny_model, tmp_path, no_network):
    import numpy as np

    from sdcli.job.generate import run
    from sdcli.models.loader import load_model
    from sdcli.request.generation import GenerationRequest, validate

    file = build_tiny_single_file(tmp_path / "sd1.safetensors")
    request = GenerationRequest("a red cube", steps=2, seed=3, width=32, height=32)
    images = []
    for ref in (resolve_model(str(file)), ModelRef(tiny_model, "tiny")):
        item = next(run(request, load_model(ref, PLAN), validate(request), model_name="m", model_hash="h"))
        images.append(np.asarray(item.image))
    assert np.array_equal(*images) and images[0].std() > 1


def test_prediction_type_metadata_guess_and_override(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from sdcli.models.single_file import inspect

    file = build_tiny_single_file(tmp_path / "sd2i.safetensors", arch="sd2-inpaint")
    assert (inspect(file).prediction, inspect(file).prediction_guessed) == ("v", False)  # from modelspec metadata
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(file), str(bare))  # the same weights without metadata: SD 2.x inpainting -> eps, a guess
    assert (inspect(bare).prediction, inspect(bare).prediction_guessed) == ("eps", True)
    assert json.loads(json.dumps(inspect(bare).family.name)) == "sd2"


def test_prediction_type_override_changes_the_scheduler(tmp_path):
    from sdcli.models.loader import load_model, set_sampler
    from sdcli.sampling.samplers import resolve_sampler

    pipe = load_model(resolve_model(str(build_tiny_single_file(tmp_path / "sd2.safetensors", arch="sd2"))), PLAN)
    choice = resolve_sampler("Euler", "automatic")
    set_sampler(pipe, choice)
    assert pipe.pipe.scheduler.config.prediction_type == "v_prediction"
    set_sampler(pipe, choice, "eps")
    assert pipe.pipe.scheduler.config.prediction_type == "epsilon"


def test_model_hash_is_the_webui_short_hash_and_is_cached(tmp_path):
    from sdcli.models import hashes
    from sdcli.models.resolve import model_hash

    file = build_tiny_single_file(tmp_path / "m.safetensors")
    data = file.read_bytes()
    assert model_hash(file) == hashlib.sha256(data).hexdigest()[:10]
    # Same size and mtime: the cached value is used, the file is not read again.
    stat = file.stat()
    opened = []
    real_digest = hashes._digest_files
    hashes._digest_files = lambda *a, **k: opened.append(a) or real_digest(*a, **k)
    try:
        changed = bytearray(data)
        changed[-1] ^= 0xFF
        file.write_bytes(bytes(changed))
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert model_hash(file) == hashlib.sha256(data).hexdigest()[:10] and not opened
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a new mtime: hashed again
        assert model_hash(file) == hashlib.sha256(bytes(changed)).hexdigest()[:10] and len(opened) == 1
    finally:
        hashes._digest_files = real_digest


def test_bad_single_files_are_one_clear_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ModelError, match=r"--model: .*lora\.safetensors: not a checkpoint of a model family"):
        resolve_model(str(other))
    file = build_tiny_single_file(tmp_path / "t.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        resolve_model(str(cut))
    with pytest.raises(Exception, match="already exists"):
        build_tiny_single_file(file)


@pytest.mark.parametrize(("bias", "expected"), [(-5.0, "v_prediction"), (5.0, "epsilon")])
def test_undeclared_sd2_prediction_is_settled_by_the_webui_unet_test(tmp_path, bias, expected):
    """No metadata: the loaded UNet is run once (latents/context 0.5, t=999); output - input below -1 = v.
    The UNet's output bias steers that mean, so both outcomes are checked."""
    from safetensors.torch import load_file, save_file

    from sdcli.models.loader import load_model

    state = load_file(build_tiny_single_file(tmp_path / "sd2.safetensors", arch="sd2"))
    state["model.diffusion_model.out.2.bias"].fill_(bias)
    bare = tmp_path / "bare.safetensors"
    save_file(state, str(bare))  # no modelspec metadata: the weights must decide
    pipe = load_model(resolve_model(str(bare)), PLAN)
    assert pipe.pipe.scheduler.config.prediction_type == expected == pipe.base_scheduler.config.prediction_type
    assert pipe.detected.prediction_guessed is False
