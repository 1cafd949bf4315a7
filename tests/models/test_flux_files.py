"""Flux.1 weight files: layout detection from headers, BFL <-> diffusers keys at any width, strict offline loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdcli.errors import ModelError
from sdcli.models import flux_load
from sdcli.models.flux_files import classify, inspect_flux_file
from sdcli.models.flux_keys import (
    bfl_to_diffusers,
    diffusers_to_bfl,
    transformer_to_diffusers,
    vae_to_diffusers,
    vae_to_ldm,
)
from sdcli.models.flux_write import LAYOUTS, write_flux_files
from tests.models import flux_tiny as ft

F32 = torch.float32


@pytest.fixture(scope="module")
def parts():
    return ft.components(seed=0)


@pytest.fixture(scope="module")
def written(parts, tmp_path_factory):
    """Every layout of the same tiny Flux model: layout -> component -> file."""
    root = tmp_path_factory.mktemp("flux-files")
    return {layout: write_flux_files(parts, root / layout, layout, qtype="F32") for layout in LAYOUTS}


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- conversion ---

def test_tiny_transformer_round_trips_through_bfl_exactly(parts):
    state = parts["transformer"].state_dict()
    bfl = diffusers_to_bfl(state)
    assert "single_blocks.0.linear1.weight" in bfl and bfl["single_blocks.0.linear1.weight"].shape == (3 * 16 + 64, 16)
    assert "double_blocks.0.img_attn.qkv.weight" in bfl and "img_in.weight" in bfl
    assert _same_state(bfl_to_diffusers(bfl), state)
    assert _same_state(transformer_to_diffusers({"model.diffusion_model." + k: v for k, v in bfl.items()}), state)


def test_the_final_modulation_halves_are_swapped_and_a_wrong_swap_shows(parts):
    state = parts["transformer"].state_dict()
    bfl = diffusers_to_bfl(state)
    scale, shift = state["norm_out.linear.weight"].chunk(2)
    assert torch.equal(bfl["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))
    # a converter that forgot the swap loads (same shapes) but computes something else
    bad = bfl_to_diffusers(bfl)
    bad["norm_out.linear.weight"] = state["norm_out.linear.weight"].roll(16, 0)
    model = ft.transformer(seed=9)
    model.load_state_dict(bad)
    inputs = ft.transformer_inputs(model)
    assert not torch.allclose(ft.run(model, inputs), ft.run(parts["transformer"], inputs))


def test_a_leftover_key_is_refused_by_name(parts):
    bfl = diffusers_to_bfl(parts["transformer"].state_dict())
    bfl["double_blocks.0.img_attn.lora_up.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="lora_up"):
        bfl_to_diffusers(bfl)


def test_the_vae_round_trips_through_the_bfl_ldm_layout_with_diffusers_converter(parts):
    vae = parts["vae"]
    ldm = vae_to_ldm(vae.state_dict(), 2)
    assert ldm["encoder.conv_out.weight"].shape[0] == 32 and "quant_conv.weight" not in ldm
    assert ldm["decoder.mid.attn_1.q.weight"].ndim == 4  # the BFL VAE's attention is 1x1 convolutions
    assert _same_state(vae_to_diffusers(ldm, dict(vae.config)), vae.state_dict())
    prefixed = vae_to_diffusers({"vae." + k: v for k, v in ldm.items()}, dict(vae.config))
    assert _same_state(prefixed, vae.state_dict())


# --- detection from the header ---

def test_each_layout_is_told_apart_from_its_header(written):
    expect = {"bfl": ("flux-transformer", "bfl", ""), "comfy": ("flux-transformer", "comfy", "model.diffusion_model."),
              "diffusers": ("flux-transformer", "diffusers", ""), "gguf": ("flux-transformer", "bfl", "")}
    for layout, (kind, key_layout, prefix) in expect.items():
        info = inspect_flux_file(written[layout]["transformer"])
        assert (info.kind, info.layout, info.prefix) == (kind, key_layout, prefix), layout
        assert (info.variant, info.width, info.in_channels, info.double_blocks, info.single_blocks) == (
            "dev", 16, 64, 2, 2), layout
    assert inspect_flux_file(written["gguf"]["transformer"]).container == "gguf"
    aio = inspect_flux_file(written["all-in-one"]["all-in-one"])
    assert (aio.kind, aio.layout, aio.parts, aio.vae_prefix) == (
        "flux-all-in-one", "comfy", ("transformer", "clip_l", "t5xxl", "vae"), "vae.")
    files = written["bfl"]
    assert [inspect_flux_file(files[c]).kind for c in ("vae", "text_encoder", "text_encoder_2")] == [
        "flux-vae", "clip-l", "t5xxl"]
    assert inspect_flux_file(files["vae"]).layout == "ldm"


def test_stored_dtypes_come_from_the_header(parts, tmp_path):
    for dtype, name in ((torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.float8_e4m3fn, "F8_E4M3"),
                        (torch.float8_e5m2, "F8_E5M2")):
        files = write_flux_files(parts, tmp_path / name, "bfl", dtype=dtype)
        assert inspect_flux_file(files["transformer"]).dtype == name


def test_release_shapes_give_the_variant(tmp_path):
    """Full-size shapes (meta tensors, no memory): dev, schnell and Fill as the released files have them."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    full = dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56))
    for variant, over in (("dev", {}), ("schnell", {"guidance_embeds": False}),
                          ("fill", {"in_channels": 384, "out_channels": 64})):
        with init_empty_weights():
            model = FluxTransformer2DModel(**{"guidance_embeds": True, **full, **over})
        shapes = {k: list(v.shape) for k, v in diffusers_to_bfl(model.state_dict()).items()}
        info = classify({"model.diffusion_model." + k: v for k, v in shapes.items()}, dict.fromkeys(
            ["model.diffusion_model." + k for k in shapes], "F8_E4M3"))
        assert (info.variant, info.width, info.double_blocks, info.single_blocks, info.dtype, info.layout) == (
            variant, 3072, 19, 38, "F8_E4M3", "comfy")


def test_an_sd_vae_and_a_stranger_are_not_flux():
    sd_vae = {"encoder.conv_out.weight": [8, 512, 3, 3], "encoder.conv_in.weight": [128, 3, 3, 3],
              "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3]}
    assert classify(sd_vae, dict.fromkeys(sd_vae, "F16")).kind is None
    assert classify({"foo.weight": [3]}, {"foo.weight": "F32"}).kind is None


# --- loading ---

@pytest.mark.parametrize("layout", ["bfl", "comfy", "diffusers", "gguf", "all-in-one"])
def test_every_layout_loads_to_the_same_outputs(parts, written, layout):
    path = written[layout].get("transformer", written[layout].get("all-in-one"))
    model = flux_load.load_flux_transformer(path, F32, dict(parts["transformer"].config))
    assert _same_state(model.state_dict(), parts["transformer"].state_dict())
    inputs = ft.transformer_inputs(model)
    assert torch.equal(ft.run(model, inputs), ft.run(parts["transformer"], inputs))


@pytest.mark.parametrize("layout", ["bfl", "all-in-one"])
def test_vae_and_text_encoders_load_from_standalone_and_all_in_one_files(parts, written, layout):
    files = written[layout]
    pick = (lambda name: files["all-in-one"]) if layout == "all-in-one" else files.__getitem__
    vae = flux_load.load_flux_vae(pick("vae"), F32, dict(parts["vae"].config))
    clip = flux_load.load_clip_l(pick("text_encoder"), F32, parts["text_encoder"].config.to_dict())
    t5 = flux_load.load_t5(pick("text_encoder_2"), F32, parts["text_encoder_2"].config.to_dict())
    assert _same_state(vae.state_dict(), parts["vae"].state_dict())
    ids = torch.tensor([[0, 5, 7, 9, 2]])
    with torch.no_grad():
        assert torch.equal(clip(ids).last_hidden_state, parts["text_encoder"](ids).last_hidden_state)
        assert torch.equal(t5(ids).last_hidden_state, parts["text_encoder_2"](ids).last_hidden_state)


def test_a_folder_config_works_like_a_dict(parts, written, tmp_path):
    parts["transformer"].save_config(tmp_path)
    model = flux_load.load_flux_transformer(written["bfl"]["transformer"], F32, tmp_path)
    assert _same_state(model.state_dict(), parts["transformer"].state_dict())


def test_fp8_files_load_upcast_to_the_compute_dtype(parts, tmp_path):
    files = write_flux_files(parts, tmp_path, "comfy", dtype=torch.float8_e4m3fn)
    model = flux_load.load_flux_transformer(files["transformer"], F32, dict(parts["transformer"].config))
    assert {p.dtype for p in model.parameters()} == {F32}
    rounded = ft.transformer(seed=3)  # the reference: the same weights through fp8 and back
    state = parts["transformer"].state_dict()
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).to(F32) for k, v in state.items()})
    inputs = ft.transformer_inputs(model)
    assert torch.equal(ft.run(model, inputs), ft.run(rounded, inputs))
    t5 = flux_load.load_t5(files["text_encoder_2"], F32, parts["text_encoder_2"].config.to_dict())
    assert t5.shared.weight.dtype == F32


def test_a_missing_or_extra_key_is_an_error_naming_the_file(parts, written, tmp_path):
    state = load_file(str(written["bfl"]["transformer"]))
    config = dict(parts["transformer"].config)
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "double_blocks.0.img_mod.lin.scale_weight": torch.ones(1)}, str(extra))
    with pytest.raises(ModelError, match="extra.safetensors.*scale_weight"):
        flux_load.load_flux_transformer(extra, F32, config)
    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("single_blocks.0.")}, str(missing))
    with pytest.raises(ModelError, match="missing.safetensors.*missing single_transformer_blocks.0"):
        flux_load.load_flux_transformer(missing, F32, config)
    with pytest.raises(ModelError, match="t5xxl.safetensors is not a Flux transformer: it holds t5xxl"):
        flux_load.load_flux_transformer(written["bfl"]["text_encoder_2"], F32, config)
    with pytest.raises(ModelError, match="shape"):
        flux_load.load_flux_transformer(written["bfl"]["transformer"], F32, {**config, "num_attention_heads": 4})


def test_loading_never_asks_the_hub(parts, written, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = written["all-in-one"]["all-in-one"]
    flux_load.load_flux_transformer(files, F32, dict(parts["transformer"].config))
    flux_load.load_clip_l(files, F32, parts["text_encoder"].config.to_dict())


def test_at_the_released_width_the_shape_generic_converter_equals_diffusers():
    """One double and one single block at width 3072 (random bf16, ~1.1 GB): the same keys and tensors as
    diffusers' own converter, and diffusers_to_bfl gives the file back."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    with init_empty_weights():
        meta = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
    gen = torch.Generator().manual_seed(0)
    bfl = {k: torch.empty(v.shape, dtype=torch.bfloat16).normal_(generator=gen)
           for k, v in sorted(diffusers_to_bfl(meta.state_dict()).items())}
    assert bfl["single_blocks.0.linear1.weight"].shape == (3 * 3072 + 12288, 3072)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    ours = bfl_to_diffusers(bfl)
    assert set(ours) == set(theirs) == set(meta.state_dict())
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert _same_state(transformer_to_diffusers(bfl), theirs)  # the dispatch takes diffusers' path here
    assert _same_state(diffusers_to_bfl(ours), bfl)
