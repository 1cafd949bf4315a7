"""A LoRA's family from its layer names (models.lora_target), for the refusal that names both families: every
format of every flow family's tiny LoRA, SD's and Flux.1's, and names that mark none."""

from __future__ import annotations

import pytest

from sdcli.models.lora_target import lora_target
from sdcli.models.tiny_flow_lora import write_tiny_flow_lora

FAMILY = {"sd3": "sd3", "zimage": "zimage", "chroma": "chroma", "qwen-image": "qwen-image",
          "flux2-klein": "flux2-klein"}
FORMATS = ("peft", "kohya", "comfy", "comfy-kohya", "musubi", "aitoolkit", "lightning")


def _keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return list(fh.keys())  # noqa: SIM118 - safe_open has no iteration


@pytest.mark.parametrize("arch", list(FAMILY))
def test_each_flow_familys_files_are_its_own_and_no_others(tiny_family, tmp_path, arch):
    """Each format names its own family (or the Flux-style group that holds it) and never another's."""
    for fmt in FORMATS:
        keys = _keys(write_tiny_flow_lora(tiny_family(arch), tmp_path / f"{fmt}.safetensors", arch, fmt=fmt,
                                          text_encoders=arch == "sd3"))
        target = lora_target(keys)
        if target is None:  # diffusers' names shared with other transformers: no guess, never a wrong one
            assert arch in ("sd3", "qwen-image") and fmt in ("peft", "musubi", "aitoolkit", "lightning"), fmt
            continue
        assert FAMILY[arch] in target.families, (fmt, target.label)


def test_sd_and_flux1_files_are_named(tiny_model, tiny_flux, tmp_path):
    from sdcli.models.tiny_assets import write_tiny_lora
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora

    for fmt in ("kohya", "diffusers"):
        keys = _keys(write_tiny_lora(tiny_model, tmp_path / f"sd-{fmt}.safetensors", fmt=fmt, text_encoder=False))
        assert lora_target(keys).label == "Stable Diffusion 1.x/2.x/XL"
    for fmt in ("kohya", "peft", "xlabs"):
        keys = _keys(write_tiny_flux_lora(tiny_flux["flux-dev"], tmp_path / f"flux-{fmt}.safetensors", fmt=fmt,
                                          layers="attn", text_encoder=False))
        assert "flux-dev" in lora_target(keys).families


def test_names_no_family_has_mark_none():
    assert lora_target(["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]) is None
    assert lora_target(["foo.lora_A.weight"]) is None
    assert lora_target(["diffusion_model.layers.0.attention.qkv.lora_A.weight"]).label == "Z-Image"
