"""ComfyUI's scaled fp8 tensors as read_tensors reads them (models.scaled_fp8): each scaled weight multiplied out in
the compute dtype, markers and scales gone, a component of an all-in-one file read with its own scales only, and
what cannot be mapped refused in one line naming the file. (Pixels, every family: tests/cli/test_scaled_fp8_cli.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from sdcli.errors import ModelError
from sdcli.models.flux_load import read_tensors


def _conf(fmt: str) -> torch.Tensor:
    return torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def _fp8(shape, seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(torch.float8_e4m3fn)


def test_old_and_new_layouts_multiply_out_and_drop_their_side_tensors(tmp_path):
    """The old marker + scale_weight/scale_input (a ComfyUI all-in-one: the T5 under its prefix, the marker outside
    it) and the new weight_scale/input_scale/comfy_quant, in bf16: stored * scale, computed in float32."""
    w1, w2, norm = _fp8((4, 3)), _fp8((5, 4), 1), torch.ones(4)
    t5 = "text_encoders.t5xxl.transformer."
    save_file({"model.diffusion_model.scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn),
               "model.diffusion_model.a.weight": w1, "model.diffusion_model.a.scale_weight": torch.tensor(0.5),
               "model.diffusion_model.a.scale_input": torch.tensor(1.0), "model.diffusion_model.n.weight": norm,
               t5 + "b.weight": w2, t5 + "b.weight_scale": torch.tensor(0.75), t5 + "b.input_scale": torch.tensor(2.0),
               t5 + "b.comfy_quant": _conf("float8_e4m3fn")}, str(tmp_path / "aio.safetensors"))
    model = read_tensors(tmp_path / "aio.safetensors", "model.diffusion_model.", dtype=torch.bfloat16)
    assert set(model) == {"a.weight", "n.weight"}
    assert torch.equal(model["a.weight"], (w1.float() * 0.5).to(torch.bfloat16))
    assert torch.equal(model["n.weight"], norm)
    text = read_tensors(tmp_path / "aio.safetensors", t5, dtype=torch.bfloat16)
    assert set(text) == {"b.weight"} and torch.equal(text["b.weight"], (w2.float() * 0.75).to(torch.bfloat16))


def test_metadata_formats_and_a_scale_per_row(tmp_path):
    """Formats from _quantization_metadata; a scale per output row multiplies each row (a plain fp8 tensor beside
    them is left for the caller's upcast)."""
    w, plain = _fp8((3, 2)), _fp8((2, 2), 2)
    rows = torch.tensor([0.5, 2.0, 4.0])
    save_file({"a.weight": w, "a.weight_scale": rows, "p.weight": plain}, str(tmp_path / "m.safetensors"),
              metadata={"_quantization_metadata": json.dumps({"layers": {"a": {"format": "float8_e4m3fn"}}})})
    got = read_tensors(tmp_path / "m.safetensors")
    assert torch.equal(got["a.weight"], w.float() * rows[:, None]) and got["a.weight"].dtype == torch.float32
    assert torch.equal(got["p.weight"], plain)


def test_metadata_may_name_the_layers_without_the_files_prefix(tmp_path):
    """A diffusion model under "model.diffusion_model." whose _quantization_metadata names its layers bare."""
    w = _fp8((3, 2))
    save_file({"model.diffusion_model.a.weight": w, "model.diffusion_model.a.weight_scale": torch.tensor(0.5)},
              str(tmp_path / "m.safetensors"),
              metadata={"_quantization_metadata": json.dumps({"layers": {"a": {"format": "float8_e4m3fn"}}})})
    got = read_tensors(tmp_path / "m.safetensors", "model.diffusion_model.")
    assert set(got) == {"a.weight"} and torch.equal(got["a.weight"], w.float() * 0.5)


@pytest.mark.parametrize("extra,metadata,words", [
    ({"a.weight_scale": torch.ones(5), "a.comfy_quant": _conf("float8_e4m3fn")}, None,
     "the scale of a.weight has shape [5], which fits neither"),
    ({"a.comfy_quant": _conf("float8_e4m3fn")}, None, "a.weight is marked float8_e4m3fn but has no weight_scale"),
    ({"a.comfy_quant": torch.tensor([1, 2, 255], dtype=torch.uint8)}, None,
     "a.comfy_quant is not ComfyUI's quantization JSON"),
    ({"a.weight_scale": torch.tensor(1.0)}, {"_quantization_metadata": "{"}, "its _quantization_metadata metadata"),
    ({"a.weight_scale": torch.tensor(1.0), "a.comfy_quant": _conf("int8_tensorwise")}, None,
     "a is stored as 'int8_tensorwise', a ComfyUI quantization sdcli cannot read"),
])
def test_what_cannot_be_mapped_is_refused_naming_the_file(tmp_path, extra, metadata, words):
    """A misfit scale, a missing one, broken JSON, a format other than per-tensor fp8."""
    path = tmp_path / "bad.safetensors"
    save_file({"a.weight": _fp8((3, 2)), **extra}, str(path), metadata=metadata)
    with pytest.raises(ModelError) as info:
        read_tensors(path, source="--text-encoder")
    message = str(info.value)
    assert message.startswith(f"--text-encoder: {path}: {words}") and "\n" not in message, message


def test_scales_without_their_marker_or_format_are_left_to_the_key_checks(tmp_path):
    """As ComfyUI, which converts scale_weight only beside the scaled_fp8 marker and reads weight_scale only for a
    layer with a format: without them the scales stay as they are (and the model's strict key check refuses them by
    name), the weight is not multiplied."""
    w = _fp8((3, 2))
    save_file({"a.weight": w, "a.scale_weight": torch.tensor(0.5), "b.weight": w.clone(),
               "b.weight_scale": torch.tensor(2.0)}, str(tmp_path / "bare.safetensors"))
    got = read_tensors(tmp_path / "bare.safetensors")
    assert set(got) == {"a.weight", "a.scale_weight", "b.weight", "b.weight_scale"}
    assert torch.equal(got["a.weight"], w) and torch.equal(got["b.weight"], w)
