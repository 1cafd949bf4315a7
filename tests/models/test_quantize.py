"""The storage table (request.storage) and the quantization configs built from it (models.quantize): each --quantize
mode gives the diffusers config (the diffusion network) and the transformers config (a big text encoder) of its
backend with the row's arguments; the machine check names --quantize and the reason. On CPU, without bitsandbytes
or torchao: bitsandbytes' 4-bit configs ask its installed version, so the test says one; torchao's configs are
checked against a stand-in of its Float8WeightOnlyConfig (the GPU test, test_quantize_gpu.py, loads the real ones)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types

import pytest
import torch

from sdcli.errors import UsageError
from sdcli.families import FAMILIES
from sdcli.models.quantize import backend_config, check_machine, pipeline_config
from sdcli.request.storage import BY_LABEL, QUANTIZE, STORAGES, storage_of
from sdcli.request.vocabulary import LOW_BITS, low_bits_key


@pytest.fixture
def bitsandbytes_version(monkeypatch):
    """bitsandbytes' installed version as 0.45.0 (its 4-bit configs check it; the package is not needed to build
    them)."""
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.0" if name == "bitsandbytes" else real(name))


@pytest.fixture
def torchao_stand_in(monkeypatch):
    """A stand-in `torchao.quantization` with AOBaseConfig and Float8WeightOnlyConfig (the configs' type checks)."""
    import diffusers.quantizers.auto  # noqa: F401 (they look for torchao when first imported: before the stand-in)
    import transformers.quantizers.auto  # noqa: F401
    import transformers.utils.quantization_config as tq

    api = types.ModuleType("torchao.quantization.quant_api")
    quantization = types.ModuleType("torchao.quantization")
    api.AOBaseConfig = type("AOBaseConfig", (), {})
    quantization.Float8WeightOnlyConfig = type("Float8WeightOnlyConfig", (api.AOBaseConfig,), {})
    quantization.quant_api = api
    torchao = types.ModuleType("torchao")
    torchao.quantization = quantization
    for name, module in (("torchao", torchao), ("torchao.quantization", quantization),
                         ("torchao.quantization.quant_api", api)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(tq, "is_torchao_available", lambda: True)
    return quantization


def test_the_table_has_forges_labels_and_one_row_a_quantize_name():
    assert [s.label for s in STORAGES if s.label in ("bnb-nf4", "bnb-fp4", "float8-e4m3fn", "float8-e5m2")] == [
        "float8-e4m3fn", "float8-e5m2", "bnb-nf4", "bnb-fp4"]  # Forge's forge_unet_storage_dtype_options
    assert {name: row.label for name, row in QUANTIZE.items()} == {
        "nf4": "bnb-nf4", "fp4": "bnb-fp4", "int8": "bnb-int8", "fp8": "torchao-float8wo"}
    assert {name: (row.package, row.cuda) for name, row in QUANTIZE.items()} == {
        "nf4": ("bitsandbytes", (0, 0)), "fp4": ("bitsandbytes", (0, 0)), "int8": ("bitsandbytes", (0, 0)),
        "fp8": ("torchao", (8, 9))}
    assert not any(s.quantized for s in STORAGES if s.label.startswith("float8"))
    from diffusers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING as in_diffusers
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING as in_transformers

    assert all(s.backend in in_diffusers and s.backend in in_transformers for s in STORAGES if s.quantized)
    # --low-bits takes every label (and Forge's " (fp16 LoRA)"), --quantize's names are spellings of them
    assert {"bnb-int8", "torchao-float8wo (fp16 lora)", "automatic"} <= set(LOW_BITS)
    assert low_bits_key("NF4") == "bnb-nf4" and low_bits_key("fp8") == "torchao-float8wo"
    assert storage_of("bnb-nf4 (fp16 LoRA)") is BY_LABEL["bnb-nf4"] and storage_of("automatic") is None


@pytest.mark.parametrize("transformers", [False, True], ids=["network", "text-encoder"])
def test_bitsandbytes_modes_build_their_configs(bitsandbytes_version, transformers):
    module = "transformers.utils" if transformers else "diffusers.quantizers"
    for name, four, kind in (("nf4", True, "nf4"), ("fp4", True, "fp4"), ("int8", False, None)):
        config = backend_config(QUANTIZE[name], torch.bfloat16, transformers=transformers)
        assert type(config).__name__ == "BitsAndBytesConfig" and type(config).__module__.startswith(module)
        assert (config.load_in_4bit, config.load_in_8bit) == (four, not four)
        if four:  # computed in the run's dtype, Forge's single quantization (no double quant)
            assert (config.bnb_4bit_quant_type, config.bnb_4bit_compute_dtype) == (kind, torch.bfloat16)
            assert config.bnb_4bit_use_double_quant is False


def test_fp8_is_torchaos_float8_weight_only(torchao_stand_in):
    for transformers in (False, True):
        config = backend_config(QUANTIZE["fp8"], torch.bfloat16, transformers=transformers)
        assert type(config).__name__ == "TorchAoConfig"
        assert isinstance(config.quant_type, torchao_stand_in.Float8WeightOnlyConfig)


def test_the_pipeline_config_quantizes_the_network_and_the_big_encoders(bitsandbytes_version):
    config = pipeline_config(QUANTIZE["nf4"], "transformer", ("text_encoder_2",), torch.bfloat16)
    mapping = config.quant_mapping
    assert list(mapping) == ["transformer", "text_encoder_2"]
    assert type(mapping["transformer"]).__module__.startswith("diffusers")
    assert type(mapping["text_encoder_2"]).__module__.startswith("transformers")
    assert list(pipeline_config(QUANTIZE["int8"], "transformer", (), torch.bfloat16).quant_mapping) == ["transformer"]


def test_each_family_names_its_big_text_encoders():
    big = {name: f.big_text_encoders for name, f in FAMILIES.items() if f.capabilities.low_bits}
    assert big == {**dict.fromkeys(("flux-dev", "flux-schnell", "flux-fill", "flux-control", "flux-kontext"),
                                   ("text_encoder_2",)),
                   "sd3": ("text_encoder_3",),
                   **dict.fromkeys(("zimage", "chroma", "qwen-image", "qwen-image-edit", "qwen-image-edit-plus",
                                    "flux2-klein", "flux2-klein-base", "flux2-dev"), ("text_encoder",))}
    assert FAMILIES["sd1"].big_text_encoders == () and not FAMILIES["sd1"].capabilities.low_bits


def test_the_machine_check_names_the_flag_and_the_reason(monkeypatch):
    with pytest.raises(UsageError, match=r"^--quantize: nf4 needs a CUDA GPU \(bitsandbytes' kernels\); this job "
                                         r"runs on cpu"):
        check_machine(QUANTIZE["nf4"], "cpu")
    with pytest.raises(UsageError, match=r"^--low-bits: bnb-nf4 needs a CUDA GPU .* runs on mps"):
        check_machine(QUANTIZE["nf4"], "mps", "--low-bits")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("bitsandbytes", "torchao") else real(name, *a))
    with pytest.raises(UsageError, match=r"^--quantize: int8 needs the bitsandbytes package, which is not installed"):
        check_machine(QUANTIZE["int8"], "cuda")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 6))
    with pytest.raises(UsageError, match=r"^--quantize: fp8 needs a CUDA GPU with fp8 \(compute capability 8\.9 or "
                                         r"newer\); this GPU's is 8\.6"):
        check_machine(QUANTIZE["fp8"], "cuda:1")
    check_machine(QUANTIZE["nf4"], "cuda")  # any CUDA GPU
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 9))
    check_machine(QUANTIZE["fp8"], "cuda")


def test_the_loader_asks_for_the_rows_config_for_the_network_and_encoders(tiny_family, monkeypatch):
    """What a quantized storage loads with (the config itself is built on a GPU machine: test_quantize_gpu.py): the
    row, the family's network and the text encoders the plan named, in the run's dtype; layerwise casting is off."""
    import sdcli.models.quantize as quantize
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    asked = []
    monkeypatch.setattr(quantize, "pipeline_config", lambda *args: asked.append(args))  # None: loads as stored
    plan = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)
    model = load_model(ModelRef(tiny_family("zimage"), "z", storage="bnb-nf4", storage_encoders=("text_encoder",)),
                       plan)
    assert asked == [(BY_LABEL["bnb-nf4"], "transformer", ("text_encoder",), torch.float32)]
    assert model.pipe.transformer.layers[0].attention.to_q.weight.dtype == torch.float32  # no layerwise fp8 cast


def test_a_t5_lora_loads_into_an_encoder_that_refuses_a_cast(tiny_flux, tmp_path, monkeypatch):
    """A quantized T5 (--quantize-text-encoder) cannot be cast: transformers refuses `.to(dtype=...)` on a bitsandbytes
    model. A LoRA's T5 layers once cast the whole encoder after loading; only the new layers are moved now (the real
    bitsandbytes T5: tests/models/test_quantize_cpu.py)."""
    from sdcli.models.lora import LoraSpec, apply_loras
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora
    from tests.conftest import _load_on_cpu

    model = _load_on_cpu(tiny_flux["flux-dev"])
    encoder = model.pipe.text_encoder_2
    move = type(encoder).to

    def to(self, *args, **kwargs):
        if self is encoder and (kwargs.get("dtype") is not None or any(isinstance(a, torch.dtype) for a in args)):
            raise ValueError("You cannot cast a bitsandbytes model in a new `dtype`.")
        return move(self, *args, **kwargs)

    monkeypatch.setattr(type(encoder), "to", to)
    path = write_tiny_flux_lora(tiny_flux["flux-dev"], tmp_path / "t5.safetensors", fmt="kohya", t5=True,
                                transformer=False, text_encoder=False)
    apply_loras(model, [LoraSpec(path, 1.0, "t5", "t5")])
    adapted = [m for m in encoder.modules() if hasattr(m, "lora_A")]
    assert adapted and all(m.lora_A["sdcli_t5"].weight.dtype == torch.float32 for m in adapted)


def test_the_quantization_backends_log_nothing_under_sdcli(monkeypatch):
    """bitsandbytes logs a line per LLM.int8 matmul (its input cast to fp16), and at import, like torchao, the
    kernels this machine lacks; sdcli quiets their loggers (models.quiet) before they are imported."""
    import logging

    from sdcli.models.quiet import QUANTIZATION_LOGGERS, quiet_libraries

    monkeypatch.delenv("SDCLI_DEBUG", raising=False)
    saved = {name: logging.getLogger(name).level for name in QUANTIZATION_LOGGERS}
    try:
        for name in saved:  # as before any quiet_libraries() of this process
            logging.getLogger(name).setLevel(logging.NOTSET)
        quiet_libraries()
        for name in ("bitsandbytes.autograd._functions", "bitsandbytes.backends.cpu.ops", "torchao",
                     "torch.utils._pytree"):
            assert not logging.getLogger(name).isEnabledFor(logging.WARNING), name
        assert logging.getLogger("sdcli").isEnabledFor(logging.WARNING)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_the_offload_plan_counts_weights_already_on_the_device_as_free(tiny_family, monkeypatch):
    """bitsandbytes loads its quantized parts straight onto the GPU, so the free memory read after loading no longer
    holds them while the parts' bytes count them: they were counted twice, and a model that fits all resident was
    offloaded (12 GB and Flux.1 dev in nf4: sequential offload instead of model). Here a CPU plays the GPU: every
    weight is on it, and half their bytes are free besides."""
    from dataclasses import replace

    import sdcli.models.placement as placement
    from sdcli.models.loader import load_model
    from sdcli.models.resolve import ModelRef
    from sdcli.models.runtime import RuntimeOptions, plan_runtime

    plan = plan_runtime(RuntimeOptions(), cuda=False, mps=False, xformers=False)
    model = load_model(ModelRef(tiny_family("zimage"), "z"), plan)
    total = sum(placement.part_bytes(model.pipe).values())
    monkeypatch.setattr(placement, "free_memory", lambda device: total // 2)
    monkeypatch.setattr(placement, "working_bytes", lambda model, plan: 0)
    fit = placement.apply_plan(model, replace(plan, cpu_offload="auto"))
    assert model.runtime.cpu_offload == "none", fit.reasons  # 1.5x the weights free: all resident
    assert not any("offload" in reason for reason in fit.reasons)
    assert placement.resident_bytes(model.pipe, "cpu") == total and placement.resident_bytes(model.pipe, "cuda") == 0
