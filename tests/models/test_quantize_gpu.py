"""--quantize on a CUDA GPU (marked `gpu`: skipped without CUDA; a mode without its package is skipped by name): each
flow family's tiny model (Flux.1 dev, Z-Image, Qwen-Image, Flux.2 klein, Chroma, SD3) loads with each mode and its
big text encoder, their linear layers quantized by the mode's backend, the VAE as stored, and generates an image near
the unquantized one whose infotext records the mode; the offload planner sees the parts bitsandbytes loaded onto the
GPU; a LoRA's T5 layers load into a quantized T5. Run it with `pytest -m gpu tests/models/test_quantize_gpu.py` on a
GPU machine (bitsandbytes and torchao installed). The same path runs on CPU in tests/models/test_quantize_cpu.py."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from sdcli.io.metadata import read_infotext
from sdcli.request.storage import QUANTIZE

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
RUN = ("--steps", "4", "-W", "64", "-H", "64", "--seed", "7", "--device", "cuda")
FAMILIES = ("flux-dev", "zimage", "qwen-image", "flux2-klein", "chroma", "sd3")
# What a quantized torch.nn.Linear's weight becomes: bitsandbytes' parameter classes, torchao's tensor subclass.
QUANTIZED_WEIGHT = {"nf4": "Params4bit", "fp4": "Params4bit", "int8": "Int8Params", "fp8": "Float8"}
# How far (mean levels) the image may move with 4 or 8 bits a weight, in bf16. On CPU (bitsandbytes' and torchao's
# CPU paths, test_quantize_cpu.py) bf16 measured nf4 1.9-3.8, int8 0.6-1.1, fp8 0.9-1.2; the GPU kernels round
# otherwise, so these leave about 2x room until measured on a card.
NEAR = {"nf4": 8, "fp4": 10, "int8": 3, "fp8": 3}


def _image(cli, out, model, *args):
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, "a red cube")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16), read_infotext(png)


def _weight_kinds(module: torch.nn.Module) -> set[str]:
    return {type(m.weight).__name__ for m in module.modules() if isinstance(m, torch.nn.Linear)}


def _usable(mode: str) -> None:
    row = QUANTIZE[mode]
    if importlib.util.find_spec(str(row.package)) is None:
        pytest.skip(f"{row.package} is not installed")
    if row.cuda and torch.cuda.get_device_capability() < row.cuda:
        pytest.skip(f"{mode} needs compute capability {row.cuda}")


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("mode", list(QUANTIZE))
def test_each_mode_loads_quantized_and_generates(cli, tiny_family, tmp_path, monkeypatch, arch, mode):
    _usable(mode)
    row, model = QUANTIZE[mode], tiny_family(arch)
    full, _ = _image(cli, tmp_path / "full", model)
    low, text = _image(cli, tmp_path / "low", model, "--quantize", mode, "--quantize-text-encoder")
    assert f"Diffusion in Low Bits: {row.label}" in text and "Quantize text encoder: True" in text
    assert 0 < np.abs(full - low).mean() < NEAR[mode]  # the same image, through weights of fewer bits

    import sdcli.models.placement as placement
    from sdcli.families import detect_folder
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    family = detect_folder(model).family
    seen = []  # what was on the GPU when the offload planner ran: bitsandbytes' parts, loaded there
    resident = placement.resident_bytes
    monkeypatch.setattr(placement, "resident_bytes", lambda pipe, device: seen.append(resident(pipe, device)) or
                        seen[-1])
    plan = plan_runtime(RuntimeOptions(device="cuda", cpu_offload="auto"), cuda=True, mps=False, xformers=False)
    loaded = load_model(ModelRef(model, arch, storage=row.label, storage_encoders=family.big_text_encoders), plan)
    quantized = ("transformer", *family.big_text_encoders)
    for component in quantized:
        kinds = _weight_kinds(getattr(loaded.pipe, component))
        assert any(QUANTIZED_WEIGHT[mode] in kind for kind in kinds), (component, kinds)
    assert not any(QUANTIZED_WEIGHT[mode] in kind for kind in _weight_kinds(loaded.pipe.vae))  # the VAE as stored
    assert loaded.runtime.cpu_offload == "none"  # tiny: everything resident
    if row.backend.startswith("bitsandbytes"):
        assert seen == [sum(placement.part_bytes(loaded.pipe)[name] for name in quantized)]


def test_a_lora_with_t5_layers_on_a_quantized_t5(cli, tiny_family, tmp_path):
    _usable("nf4")
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora

    model, lora = tiny_family("flux-dev"), tmp_path / "t5.safetensors"
    write_tiny_flux_lora(model, lora, fmt="kohya", t5=True)
    full, _ = _image(cli, tmp_path / "full", model, "--lora", f"{lora}:1")
    plain, _ = _image(cli, tmp_path / "plain", model, "--quantize", "nf4", "--quantize-text-encoder")
    low, text = _image(cli, tmp_path / "low", model, "--quantize", "nf4", "--quantize-text-encoder", "--lora",
                       f"{lora}:1")
    assert "Lora hashes" in text and np.abs(low - plain).mean() > 10  # the LoRA counts
    assert np.abs(low - full).mean() < NEAR["nf4"]
