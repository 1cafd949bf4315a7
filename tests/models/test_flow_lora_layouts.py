"""The flow families' LoRA layouts (models.flow_lora) against the weight converters they mirror: the Linear weights
of each tiny transformer written in the layout's original names (fused layers concatenated, swapped rows swapped
back) go through diffusers' single-file converter (Z-Image, Flux.2) and come back as the model's own weights, or are
what sdcli's writers of SD3 and Flux single files (sd3_write, flux_keys; checked against diffusers' loaders) write
(diffusers' Chroma converter takes full-width whole files only). A LoRA renamed by
a layout therefore lands where the same layer of a single file does."""

from __future__ import annotations

import pytest
import torch

from sdcli.models.flow_lora import LAYOUTS, swap_halves
from sdcli.models.tiny_flow_lora import ARCH_LAYOUTS


def _transformer(tiny_family, arch):
    from safetensors.torch import load_file

    state = load_file(str(tiny_family(arch) / "transformer" / "diffusion_pytorch_model.safetensors"))
    shapes = {k[:-len(".weight")]: (int(v.shape[1]), int(v.shape[0])) for k, v in state.items()
              if k.endswith(".weight") and v.ndim == 2}
    return state, LAYOUTS[ARCH_LAYOUTS[arch]](shapes)


def _original(state, layout, prefix=""):
    """The Linear weights in the layout's original names."""
    out = {}
    for name, (modules, swap) in layout.items():
        weight = torch.cat([state[f"{m}.weight"] for m in modules])
        out[f"{prefix}{name}.weight"] = swap_halves(weight) if swap else weight
    return out


@pytest.mark.parametrize("arch, converter", [
    ("zimage", "convert_z_image_transformer_checkpoint_to_diffusers"),
    ("flux2-klein", "convert_flux2_transformer_checkpoint_to_diffusers"),
])
def test_diffusers_converter_takes_the_layouts_names_back_to_the_model(tiny_family, arch, converter):
    from diffusers.loaders import single_file_utils

    state, layout = _transformer(tiny_family, arch)
    back = getattr(single_file_utils, converter)(_original(state, layout))
    linear = {k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2}
    assert len(layout) > 10 and set(back) <= set(state)
    assert all(torch.equal(back[k], state[k]) for k in back)
    assert linear - set(back) == set()
    # It can fail: a layer named by another layer's name comes back as the wrong weight.
    names = sorted(layout)
    wrong = {**layout, names[0]: layout[names[1]], names[1]: layout[names[0]]}
    back = getattr(single_file_utils, converter)(_original(state, wrong))
    assert not all(torch.equal(back[k], state[k]) for k in back)


def test_sd3_layout_names_the_weights_sd3_single_files_hold(tiny_family):
    from sdcli.models.sd3_write import mmdit_state

    state, layout = _transformer(tiny_family, "sd3")
    blocks = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
    written = mmdit_state(state, blocks)
    ours = _original(state, layout)
    assert len(ours) > 10 and all(torch.equal(ours[k], written[k]) for k in ours)
    # It can fail: the last block's context modulation is stored with its halves swapped.
    last = f"joint_blocks.{blocks - 1}.context_block.adaLN_modulation.1.weight"
    assert not torch.equal(ours[last], state[f"transformer_blocks.{blocks - 1}.norm1_context.linear.weight"])


def test_chroma_layout_names_the_weights_flux_files_hold(tiny_family):
    from sdcli.models.flux_keys import diffusers_to_bfl

    state, layout = _transformer(tiny_family, "chroma")
    modules = {m for targets, _ in layout.values() for m in targets if not m.startswith("distilled_guidance_layer.")}
    written = diffusers_to_bfl({f"{m}.weight": state[f"{m}.weight"] for m in modules})
    ours = _original(state, layout)
    approximator = {k for k in ours if k.startswith("distilled_guidance_layer.")}  # not a Flux.1 layer
    # diffusers' Chroma converter: the approximator's layers.N.in_layer/out_layer are linear_1/linear_2
    theirs = {k.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.") for k, v in state.items()
              if k.startswith("distilled_guidance_layer.") and k.endswith(".weight") and v.ndim == 2}
    assert approximator == theirs and "distilled_guidance_layer.layers.0.in_layer.weight" in theirs
    ours = {k: v for k, v in ours.items() if k not in approximator}
    assert len(ours) > 10 and set(ours) == set(written) and all(torch.equal(ours[k], written[k]) for k in ours)
