"""LoRAs through diffusers/peft on the tiny model: weights, stacking, formats, misfits, tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdcli.errors import ModelError
from sdcli.models.lora import LoraSpec, apply_loras, lora_hashes, parse_hashes, parse_lora_flag
from sdcli.models.tiny_assets import write_tiny_lora


@pytest.fixture(scope="module")
def pipe(tiny_model):
    """A pipeline of its own: these tests put LoRAs on it and take them off."""
    from tests.conftest import _load_on_cpu

    loaded = _load_on_cpu(tiny_model)
    yield loaded
    apply_loras(loaded, [])


def pixels(pipe) -> np.ndarray:
    import torch

    out = pipe.pipe("a cat", num_inference_steps=2, width=32, height=32, output_type="np",
               generator=torch.Generator().manual_seed(1))
    return np.asarray(out.images)


def spec(path: Path, weight: float) -> LoraSpec:
    return LoraSpec(path, weight, path.stem, path.stem[:12])


@pytest.fixture(scope="module")
def base(pipe):
    apply_loras(pipe, [])
    return pixels(pipe)


@pytest.mark.parametrize("name", ["detail.safetensors", "style/painterly.safetensors", "textonly.safetensors"])
def test_weight_zero_is_the_base_model_and_weight_one_changes_it(pipe, base, models_dir, name):
    lora = models_dir / "Lora" / name
    apply_loras(pipe, [spec(lora, 0.0)])
    assert np.array_equal(pixels(pipe), base)
    apply_loras(pipe, [spec(lora, 1.0)])
    assert np.abs(pixels(pipe) - base).max() > 0.01
    apply_loras(pipe, [])
    assert np.array_equal(pixels(pipe), base)  # unloaded: exactly the base model again


def test_two_loras_stack(pipe, base, models_dir):
    kohya, peft = models_dir / "Lora" / "detail.safetensors", models_dir / "Lora" / "style" / "painterly.safetensors"
    apply_loras(pipe, [spec(kohya, 1.0)])
    alone_a = pixels(pipe)
    apply_loras(pipe, [spec(peft, 1.0)])
    alone_b = pixels(pipe)
    apply_loras(pipe, [spec(kohya, 1.0), spec(peft, 1.0)])
    both = pixels(pipe)
    apply_loras(pipe, [])
    assert not np.array_equal(both, alone_a) and not np.array_equal(both, alone_b)
    assert not np.array_equal(both, base)


def test_switching_loras_keeps_the_base_weights_loaded(pipe, base, models_dir):
    apply_loras(pipe, [spec(models_dir / "Lora" / "detail.safetensors", 1.0)])
    first = pixels(pipe)
    apply_loras(pipe, [spec(models_dir / "Lora" / "textonly.safetensors", 1.0)])
    assert set(pipe.addons.loras) == {"sdcli_textonly"}
    apply_loras(pipe, [spec(models_dir / "Lora" / "detail.safetensors", 1.0)])
    assert np.array_equal(pixels(pipe), first)
    apply_loras(pipe, [])
    assert np.array_equal(pixels(pipe), base)



def test_text_encoder_and_unet_weights_apart(pipe, base, models_dir):
    """<lora:name:te:unet>: each weight reaches only its own component (the WebUI's split)."""
    lora = models_dir / "Lora" / "detail.safetensors"

    def run(te: float, unet: float) -> np.ndarray:
        apply_loras(pipe, [LoraSpec(lora, te, "detail", "detail", unet_weight=unet)])
        return pixels(pipe)

    both, te_only, unet_only, none = run(1.0, 1.0), run(1.0, 0.0), run(0.0, 1.0), run(0.0, 0.0)
    apply_loras(pipe, [spec(lora, 1.0)])
    assert np.array_equal(pixels(pipe), both)  # unet_weight == weight: the one-weight path
    apply_loras(pipe, [])
    assert np.array_equal(none, base)
    distinct = [both, te_only, unet_only, base]
    assert all(not np.array_equal(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:])

def test_lora_of_another_shape_is_refused_by_name(pipe, base, tiny_model, tmp_path):
    wide = write_tiny_lora(tiny_model, tmp_path / "sdxl-style.safetensors", scale_width=2)
    with pytest.raises(ModelError, match=r"--lora: .*sdxl-style\.safetensors does not fit this model"):
        apply_loras(pipe, [spec(wide, 1.0)])
    assert np.array_equal(pixels(pipe), base)  # nothing half-loaded


def test_sdxl_lora_keys_are_refused_by_name(pipe, base, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "xl.safetensors"
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    save_file({f"{key}.lora_down.weight": torch.zeros(4, 640), f"{key}.lora_up.weight": torch.zeros(640, 4),
               f"{key}.alpha": torch.tensor(4.0)}, str(path))
    with pytest.raises(ModelError, match=r"--lora: .*xl\.safetensors does not fit this model"):
        apply_loras(pipe, [spec(path, 1.0)])
    assert np.array_equal(pixels(pipe), base)


def test_a_file_without_lora_layers_is_refused(pipe, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "notalora.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(ModelError, match="holds no LoRA layers"):
        apply_loras(pipe, [spec(path, 1.0)])


@pytest.mark.parametrize("value, expected", [("a.safetensors", ("a.safetensors", 1.0)),
                                             ("a.safetensors:0.5", ("a.safetensors", 0.5)),
                                             ("C:/loras/a.safetensors:-1", ("C:/loras/a.safetensors", -1.0)),
                                             ("C:/loras/a.safetensors", ("C:/loras/a.safetensors", 1.0)),
                                             ("name:x", ("name:x", 1.0))])
def test_parse_lora_flag(value, expected):
    assert parse_lora_flag(value) == expected


def test_lora_hashes_as_the_webui_writes_them():
    specs = [LoraSpec(Path("a"), 1, "detail", "0123456789ab"), LoraSpec(Path("b"), 1, "x:y,z", "ba9876543210")]
    text = lora_hashes(specs)
    assert text == "detail: 0123456789ab, xyz: ba9876543210"
    assert parse_hashes(text) == {"detail": "0123456789ab", "xyz": "ba9876543210"}
    assert lora_hashes([]) is None


def test_a_diffusers_lora_folder_is_named_by_the_folder(models_dir, tmp_path):
    import shutil

    from sdcli.models.assets import AssetOptions, plan_assets

    folder = tmp_path / "my-style"
    folder.mkdir()
    shutil.copy(models_dir / "Lora" / "detail.safetensors", folder / "pytorch_lora_weights.safetensors")
    (lora,) = plan_assets(AssetOptions(loras=(f"{folder}:0.5",)), "a cat").loras
    assert (lora.path, lora.weight, lora.name) == (folder / "pytorch_lora_weights.safetensors", 0.5, "my-style")
