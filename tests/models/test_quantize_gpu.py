"""--quantize on a CUDA GPU (marked `gpu`: skipped without CUDA; a mode without its package is skipped by name): the
tiny Flux dev (T5-XXL as text_encoder_2) and Z-Image (Qwen3) load with each mode, their transformer's and big text
encoder's linear layers quantized by the mode's backend, and generate an image near the unquantized one whose
infotext records the mode. Run it with `pytest -m gpu tests/models/test_quantize_gpu.py` on a GPU machine."""

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
# What a quantized torch.nn.Linear's weight becomes: bitsandbytes' parameter classes, torchao's tensor subclass.
QUANTIZED_WEIGHT = {"nf4": "Params4bit", "fp4": "Params4bit", "int8": "Int8Params", "fp8": "Float8"}
# How far (mean levels) a tiny random-weight model's image may move with 4 or 8 bits a weight (a guess until measured).
NEAR = {"nf4": 60, "fp4": 60, "int8": 30, "fp8": 30}


def _image(cli, out, model, *args):
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, "a red cube")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16), read_infotext(png)


def _weight_kinds(module: torch.nn.Module) -> set[str]:
    return {type(m.weight).__name__ for m in module.modules() if isinstance(m, torch.nn.Linear)}


@pytest.mark.parametrize("arch", ["flux-dev", "zimage"])
@pytest.mark.parametrize("mode", list(QUANTIZE))
def test_each_mode_loads_quantized_and_generates(cli, tiny_family, tmp_path, arch, mode):
    row = QUANTIZE[mode]
    if importlib.util.find_spec(str(row.package)) is None:
        pytest.skip(f"{row.package} is not installed")
    if row.cuda and torch.cuda.get_device_capability() < row.cuda:
        pytest.skip(f"{mode} needs compute capability {row.cuda}")
    model = tiny_family(arch)
    full, _ = _image(cli, tmp_path / "full", model)
    low, text = _image(cli, tmp_path / "low", model, "--quantize", mode, "--quantize-text-encoder")
    assert f"Diffusion in Low Bits: {row.label}" in text and "Quantize text encoder: True" in text
    assert 0 < np.abs(full - low).mean() < NEAR[mode]  # the same image, through weights of fewer bits

    from sdcli.families import detect_folder
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    family = detect_folder(model).family
    plan = plan_runtime(RuntimeOptions(device="cuda"), cuda=True, mps=False, xformers=False)
    loaded = load_model(ModelRef(model, arch, storage=row.label, storage_encoders=family.big_text_encoders), plan)
    for component in ("transformer", *family.big_text_encoders):
        kinds = _weight_kinds(getattr(loaded.pipe, component))
        assert any(QUANTIZED_WEIGHT[mode] in kind for kind in kinds), (component, kinds)
    assert not any(QUANTIZED_WEIGHT[mode] in kind for kind in _weight_kinds(loaded.pipe.vae))  # the VAE as stored
