"""GGUF Flux transformers laid out as city96's are, loaded through diffusers' GGUF quantizer at any width."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from sdcli.models import flux_load
from sdcli.models.flux_files import inspect_flux_file
from sdcli.models.flux_keys import bfl_to_diffusers, diffusers_to_bfl
from sdcli.models.flux_write import write_transformer
from tests.models import flux_tiny as ft

F32 = torch.float32
# Measured on the 32-wide tiny transformer (outputs up to ~7.5): F16 4.1e-3, Q8_0 8.6e-2 at most, as a share of
# the largest output 5.5e-4 and 1.2e-2. The bounds leave about 3x room.
F16_BOUND = 2e-3
Q8_0_BOUND = 3e-2


@pytest.fixture(scope="module")
def wide():
    """32 wide, so the fused qkv / linear1 weights quantize in blocks of 32 (a 16-wide model's would stay F32)."""
    return ft.transformer(seed=4, **ft.WIDE)


@pytest.fixture(scope="module")
def files(wide, tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    return {q: write_transformer(wide, root / f"flux-{q}.gguf", "gguf", qtype=q) for q in ("F32", "F16", "Q8_0")}


def _load(path, wide):
    return flux_load.load_flux_transformer(path, F32, dict(wide.config))


def _share(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


def test_the_file_is_laid_out_as_city96s_flux_ggufs(files):
    reader = gguf.GGUFReader(files["Q8_0"])
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "flux"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["double_blocks.0.img_attn.qkv.weight"] == "Q8_0"
    assert types["single_blocks.0.linear1.weight"] == "Q8_0"
    assert types["double_blocks.0.img_attn.qkv.bias"] == "F32"  # 1-D
    assert types["img_in.weight"] == types["final_layer.linear.weight"] == "F32"  # kept in full precision
    assert types["double_blocks.0.img_attn.norm.query_norm.scale"] == "F32"
    qkv = next(t for t in reader.tensors if t.name == "double_blocks.0.img_attn.qkv.weight")
    assert [int(n) for n in qkv.shape] == [32, 96]  # GGUF lists the innermost dimension first
    info = inspect_flux_file(files["Q8_0"])
    assert (info.container, info.dtype, info.width, info.variant) == ("gguf", "Q8_0", 32, "dev")


def test_f32_gguf_equals_the_model_exactly(files, wide):
    model = _load(files["F32"], wide)
    inputs = ft.transformer_inputs(model)
    assert torch.equal(ft.run(model, inputs), ft.run(wide, inputs))


def test_f16_gguf_is_the_fp16_rounded_model_and_within_its_bound(files, wide):
    model = _load(files["F16"], wide)
    inputs = ft.transformer_inputs(model)
    rounded = ft.transformer(seed=1, **ft.WIDE)
    state = wide.state_dict()
    stored = {t.name: t.tensor_type.name for t in gguf.GGUFReader(files["F16"]).tensors}
    rounded.load_state_dict(bfl_to_diffusers({k: v.half().float() if stored[k] == "F16" else v for k, v in
                                              diffusers_to_bfl(state).items()}))
    out = ft.run(model, inputs)
    assert torch.equal(out, ft.run(rounded, inputs))
    share = _share(out, ft.run(wide, inputs))
    assert 0 < share < F16_BOUND


def test_q8_0_stays_quantized_splits_without_dequantizing_and_is_within_its_bound(files, wide):
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter

    model = _load(files["Q8_0"], wide)
    for name in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.1.proj_mlp"):
        layer = model.get_submodule(name)
        assert isinstance(layer, GGUFLinear) and isinstance(layer.weight, GGUFParameter)
        assert layer.weight.dtype == torch.uint8  # still Q8_0 bytes after the split of the fused weight
    # The reference: every tensor dequantized by gguf's own numpy code in a plain fp32 model. diffusers' CPU
    # dequantization multiplies Q8_0's fp16 block scale by the int8 values in fp16, so its weights are the exact
    # products rounded to fp16: the reference rounds the same way.
    reader = gguf.GGUFReader(files["Q8_0"])
    dequantized = {}
    for t in reader.tensors:
        value = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        dequantized[t.name] = value.half().float() if t.tensor_type.name == "Q8_0" else value
    reference = ft.transformer(seed=2, **ft.WIDE)
    reference.load_state_dict(bfl_to_diffusers(dequantized))
    inputs = ft.transformer_inputs(model)
    out = ft.run(model, inputs)
    assert torch.equal(out, ft.run(reference, inputs))
    share = _share(out, ft.run(wide, inputs))
    assert 0 < share < Q8_0_BOUND
