"""Flux Control in the family seam: detection (folders, tensor shapes), the control latent as diffusers'
FluxControlPipeline makes it, BFL control LoRAs converted as diffusers converts them, and a control LoRA's
widened x_embedder restored when it is removed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcli.families import FAMILIES, detect_folder, detect_single_file
from sdcli.models.tiny_flux_lora import write_tiny_flux_control_lora


@pytest.fixture(scope="module")
def control_model(tmp_path_factory):
    from sdcli.models.tiny import build_tiny
    from tests.conftest import _load_on_cpu

    folder = build_tiny(tmp_path_factory.mktemp("fc") / "flux-control", arch="flux-control")
    return folder, _load_on_cpu(folder)


@pytest.mark.parametrize("features,family", [(64, "flux-dev"), (128, "flux-control"), (384, "flux-fill")])
def test_img_in_inputs_pick_the_row(features, family):
    shapes = {"img_in.weight": (3072, features), "guidance_in.in_layer.weight": (3072, 256)}
    detected = detect_single_file(shapes)
    assert detected.family is FAMILIES[family] and detected.in_channels == features // 4
    assert detected.control == (family == "flux-control")


def test_a_control_folder_is_flux_control(control_model):
    detected = detect_folder(control_model[0])
    assert detected.family.name == "flux-control" and detected.in_channels == 32 and detected.control


def test_the_control_latent_is_diffusers_fluxcontrolpipelines(control_model, tmp_path):
    """prepare_image + VAE encode + (z - shift) * scale + pack, as FluxControlPipeline (its posterior's mean:
    diffusers samples it with the generator, sdcli takes the mean as it does for every input image)."""
    import torch

    from sdcli.controlnet.plan import plan_controlnets
    from sdcli.controlnet.units import ControlUnit
    from sdcli.execution.latents import encode_pixels
    from sdcli.families.flux import pack

    rng = np.random.default_rng(0)
    path = tmp_path / "c.png"
    Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(path)
    plan = plan_controlnets((ControlUnit(model="", image=str(path)),), None, False)
    model = control_model[1]
    pipe = model.pipe
    ours = pack(model.family.control_input(encode_pixels(model, plan.own_hint((48, 32)))))
    with torch.no_grad():
        image = pipe.prepare_image(Image.open(path).convert("RGB"), 48, 32, 1, 1, "cpu", pipe.vae.dtype)
        z = pipe.vae.encode(image).latent_dist.mode()
    z = (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    theirs = pipe._pack_latents(z, 1, 16, z.shape[2], z.shape[3])
    assert torch.equal(ours, theirs)
    # It can fail: one pixel changed changes the latent.
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)
    other = plan_controlnets((ControlUnit(model="", image=str(path)),), None, False)
    assert not torch.equal(pack(model.family.control_input(encode_pixels(model, other.own_hint((48, 32))))), theirs)


def test_the_bfl_control_converter_matches_diffusers_at_full_width():
    """sdcli's shape-generic converter, at the released model's size (rank 2), equals diffusers' own."""
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_bfl_flux_control_lora_to_diffusers

    from sdcli.models.flux_control_lora import bfl_control_to_peft

    gen = torch.Generator().manual_seed(0)
    width, rank, state = 3072, 2, {}

    def pair(name, fan_in, fan_out):
        state[f"{name}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen)
        state[f"{name}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen)

    for name, fan_in, fan_out in (("time_in.in_layer", 256, width), ("time_in.out_layer", width, width),
                                  ("vector_in.in_layer", 768, width), ("vector_in.out_layer", width, width),
                                  ("guidance_in.in_layer", 256, width), ("guidance_in.out_layer", width, width),
                                  ("txt_in", 4096, width), ("img_in", 128, width), ("final_layer.linear", width, 64),
                                  ("final_layer.adaLN_modulation.1", width, 2 * width)):
        pair(name, fan_in, fan_out)
    for i in range(19):
        for side in ("img", "txt"):
            pair(f"double_blocks.{i}.{side}_mod.lin", width, 6 * width)
            pair(f"double_blocks.{i}.{side}_attn.qkv", width, 3 * width)
            pair(f"double_blocks.{i}.{side}_attn.proj", width, width)
            pair(f"double_blocks.{i}.{side}_mlp.0", width, 4 * width)
            pair(f"double_blocks.{i}.{side}_mlp.2", 4 * width, width)
            for norm in ("query_norm", "key_norm"):
                state[f"double_blocks.{i}.{side}_attn.norm.{norm}.scale"] = torch.randn(128, generator=gen)
    for i in range(38):
        pair(f"single_blocks.{i}.modulation.lin", width, 3 * width)
        pair(f"single_blocks.{i}.linear1", width, 7 * width)
        pair(f"single_blocks.{i}.linear2", 5 * width, width)
        for norm in ("query_norm", "key_norm"):
            state[f"single_blocks.{i}.norm.{norm}.scale"] = torch.randn(128, generator=gen)
    ours = bfl_control_to_peft(state, width)
    theirs = _convert_bfl_flux_control_lora_to_diffusers(dict(state))
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_removing_a_control_lora_restores_the_base(tiny_flux, tmp_path):
    """On one loaded model (as a batch keeps it): control LoRA -> x_embedder 128 inputs, the network takes 32
    channels; none -> every tensor, the config and the network's output as before; a control LoRA dropped while
    another LoRA stays -> the other alone."""
    import torch

    from sdcli.models.lora import LoraSpec, apply_loras
    from sdcli.models.tiny_flux_lora import write_tiny_flux_lora
    from tests.conftest import _load_on_cpu

    model = _load_on_cpu(tiny_flux["flux-dev"])
    transformer = lambda: model.pipe.transformer  # noqa: E731 - diffusers swaps the module's layers
    ctl = LoraSpec(write_tiny_flux_control_lora(tiny_flux["flux-dev"], tmp_path / "c.safetensors"), 1.0, "c", "c")
    plain = LoraSpec(write_tiny_flux_lora(tiny_flux["flux-dev"], tmp_path / "p.safetensors", seed=2), 1.0, "p", "p")
    gen = torch.Generator().manual_seed(0)
    inputs = {"hidden_states": torch.randn(1, 4, 64, generator=gen), "timestep": torch.tensor([0.5]),
              "encoder_hidden_states": torch.randn(1, 3, 32, generator=gen), "guidance": torch.tensor([3.5]),
              "pooled_projections": torch.randn(1, 32, generator=gen), "txt_ids": torch.zeros(3, 3),
              "img_ids": torch.zeros(4, 3)}

    def out():
        with torch.no_grad():
            return transformer()(**inputs, return_dict=False)[0]

    base, base_state = out(), {k: v.clone() for k, v in transformer().state_dict().items()}
    apply_loras(model, [ctl])
    assert model.network.in_channels == 32 and transformer().config.in_channels == 128
    apply_loras(model, [])
    assert model.network.in_channels == 16 and transformer().config.in_channels == 64
    state = transformer().state_dict()
    assert sorted(state) == sorted(base_state) and all(torch.equal(state[k], base_state[k]) for k in base_state)
    assert torch.equal(out(), base)
    apply_loras(model, [plain])
    alone = out()
    apply_loras(model, [])
    apply_loras(model, [ctl, plain])
    apply_loras(model, [plain])
    assert model.network.in_channels == 16 and torch.equal(out(), alone)
