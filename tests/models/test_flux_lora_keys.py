"""sdcli's kohya -> PEFT renaming of Flux LoRAs (models.flux_lora) against diffusers' own converter at the
released width, where diffusers' converter works; and LoRAs on fp8-stored and GGUF transformers."""

from __future__ import annotations

import pytest
import torch

from sdcli.models.flux_keys import FULL_WIDTH, KeyLayoutError
from sdcli.models.flux_lora import kohya_to_peft


def _kohya_full_width(rank: int = 4) -> dict[str, torch.Tensor]:
    """A synthetic full-width kohya LoRA: one double block, one single block, the final modulation, CLIP-L."""
    gen = torch.Generator().manual_seed(0)
    w, mlp = FULL_WIDTH, 4 * FULL_WIDTH
    shapes = {"double_blocks_0_img_attn_qkv": (3 * w, w), "double_blocks_0_txt_attn_proj": (w, w),
              "double_blocks_0_img_mlp_0": (mlp, w), "double_blocks_0_txt_mod_lin": (6 * w, w),
              "single_blocks_0_linear1": (3 * w + mlp, w), "single_blocks_0_linear2": (w, w + mlp),
              "single_blocks_0_modulation_lin": (3 * w, w), "final_layer_adaLN_modulation_1": (2 * w, w)}
    state = {}
    for i, (name, (out, fan_in)) in enumerate(shapes.items()):
        key = f"lora_unet_{name}"
        state |= {f"{key}.lora_down.weight": torch.randn(rank, fan_in, generator=gen),
                  f"{key}.lora_up.weight": torch.randn(out, rank, generator=gen),
                  f"{key}.alpha": torch.tensor(float(rank) / (1 + i % 3))}
    key = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    return state | {f"{key}.lora_down.weight": torch.randn(rank, 768, generator=gen),
                    f"{key}.lora_up.weight": torch.randn(768, rank, generator=gen), f"{key}.alpha": torch.tensor(2.0)}


@pytest.mark.slow
def test_sdclis_renaming_equals_diffusers_converter_at_full_width():
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    state = _kohya_full_width()
    ours = kohya_to_peft(dict(state), FULL_WIDTH)
    theirs = _convert_kohya_flux_lora_to_diffusers(dict(state))
    # diffusers 0.42 names the top-level layers (final_layer, img_in, ...) without "transformer." (so its
    # loader, which keeps "transformer."-prefixed keys, drops them) and leaves their alpha unapplied;
    # sdcli prefixes them and folds alpha in like every other layer.
    top = {"norm_out.linear.lora_A.weight", "norm_out.linear.lora_B.weight"}
    assert top <= set(theirs) and {f"transformer.{k}" for k in top} <= set(ours)
    blocks = {k: v for k, v in ours.items() if not k.startswith("transformer.norm_out.")}
    assert set(blocks) == set(theirs) - top and len(blocks) == 2 * (3 + 1 + 1 + 1 + 4 + 1 + 1) + 2
    assert all(torch.equal(blocks[k], theirs[k]) for k in blocks)
    assert torch.equal(ours["transformer.norm_out.linear.lora_B.weight"], theirs["norm_out.linear.lora_B.weight"])
    # It can fail: a wrong width splits linear1 elsewhere.
    wrong = kohya_to_peft(dict(state), FULL_WIDTH - 64)
    key = "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight"
    assert wrong[key].shape != theirs[key].shape


def test_an_unknown_kohya_layer_is_named():
    state = {"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": torch.zeros(4, 8),
             "lora_unet_input_blocks_4_1_proj_in.lora_up.weight": torch.zeros(8, 4)}
    with pytest.raises(KeyLayoutError, match="lora_unet_input_blocks_4_1_proj_in"):
        kohya_to_peft(state, 16)


def test_a_lora_applies_on_gguf_and_fp8_stored_transformers(tmp_path):
    """diffusers/peft wrap GGUF layers (dequantized in their forward) and fp8 files' upcast layers like any
    Linear: the same LoRA on the Q8_0 file is within Q8_0's bound of it on the F32 file."""
    from sdcli.models import flux_load
    from sdcli.models.flux_write import write_transformer
    from tests.models import flux_tiny as ft
    from tests.models.test_flux_gguf import F32, Q8_0_BOUND

    wide = ft.transformer(seed=4, **ft.WIDE)
    gen = torch.Generator().manual_seed(0)
    lora = {}
    for name in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_q",
                 "single_transformer_blocks.0.proj_out"):
        mod = wide.get_submodule(name)
        lora[f"{name}.lora_A.weight"] = torch.randn(4, mod.in_features, generator=gen) * 0.3
        lora[f"{name}.lora_B.weight"] = torch.randn(mod.out_features, 4, generator=gen) * 0.3
    inputs, outs = ft.transformer_inputs(wide), {}
    for name, kind, qtype in (("F32", "gguf", "F32"), ("Q8_0", "gguf", "Q8_0"), ("fp8", "comfy", None)):
        path = tmp_path / f"{name}.{'gguf' if kind == 'gguf' else 'safetensors'}"
        if kind == "gguf":
            write_transformer(wide, path, "gguf", qtype=qtype)
        else:
            write_transformer(wide, path, "comfy", dtype=torch.float8_e4m3fn)
        model = flux_load.load_flux_transformer(path, F32, dict(wide.config))
        base = ft.run(model, inputs)
        model.load_lora_adapter(dict(lora), adapter_name="x", prefix=None)
        outs[name] = ft.run(model, inputs)
        assert (outs[name] - base).abs().max() > 0.5
    assert float((outs["Q8_0"] - outs["F32"]).abs().max() / outs["F32"].abs().max()) < Q8_0_BOUND


@pytest.mark.slow
def test_full_width_kohya_top_level_layers_reach_the_transformer(tiny_flux_pipe):
    """A full-width kohya file's img_in, guidance_in and final_layer layers change those transformer weights by
    alpha / rank * up @ down (final_layer's modulation with BFL's halves swapped); diffusers' own path drops
    them (the failure this guards against)."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    wide = FluxTransformer2DModel(num_layers=0, num_single_layers=0, num_attention_heads=24, attention_head_dim=128,
                                  joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True)
    gen, rank = torch.Generator().manual_seed(1), 4
    layers = {"img_in": "x_embedder", "guidance_in_in_layer": "time_text_embed.guidance_embedder.linear_1",
              "final_layer_linear": "proj_out", "final_layer_adaLN_modulation_1": "norm_out.linear"}
    state, expected = {}, {}
    for i, (name, module) in enumerate(layers.items()):
        linear = wide.get_submodule(module)
        down = torch.randn(rank, linear.in_features, generator=gen)
        up = torch.randn(linear.out_features, rank, generator=gen)
        alpha = rank / (2 + i)
        state |= {f"lora_unet_{name}.lora_down.weight": down, f"lora_unet_{name}.lora_up.weight": up,
                  f"lora_unet_{name}.alpha": torch.tensor(alpha)}
        delta = alpha / rank * up @ down
        if name == "final_layer_adaLN_modulation_1":
            shift, scale = delta.chunk(2)
            delta = torch.cat([scale, shift])
        expected[module] = delta

    def deltas(load) -> dict[str, torch.Tensor]:
        model = FluxTransformer2DModel.from_config(wide.config)
        model.load_state_dict(wide.state_dict())
        pipe = FluxPipeline(**{**tiny_flux_pipe.pipe.components, "transformer": model})
        load(pipe)
        before = {m: wide.get_submodule(m).weight for m in layers.values()}
        model.fuse_lora(lora_scale=1.0)
        return {m: model.get_submodule(m).get_base_layer().weight - before[m] if hasattr(
            model.get_submodule(m), "get_base_layer") else torch.zeros(1) for m in layers.values()}

    ours = deltas(lambda pipe: tiny_flux_pipe.family.load_lora(pipe, dict(state), "x"))
    for module, delta in expected.items():
        assert torch.allclose(ours[module], delta, atol=1e-4), module
    theirs = deltas(lambda pipe: pipe.load_lora_weights(dict(state), adapter_name="x"))
    assert all(not torch.allclose(theirs[m].expand_as(d), d, atol=1e-4) for m, d in expected.items())


def test_t5_layers_in_each_spelling_split_off_alike():
    """sd-scripts' lora_te3_ and older lora_te2_, ComfyUI's text_encoders.t5xxl.transformer. and PEFT's
    text_encoder_2. name the same T5 layer; alpha / rank is folded in; other keys stay; a wrong layer is named."""
    from sdcli.models.flux_lora import split_t5

    module = "encoder.block.0.layer.1.DenseReluDense.wi_0"
    down, up = torch.randn(4, 8), torch.randn(16, 4)
    other = {"lora_unet_img_in.lora_down.weight": torch.zeros(4, 64)}
    spellings = [f"lora_te3_{module.replace('.', '_')}", f"lora_te2_{module.replace('.', '_')}",
                 f"text_encoders.t5xxl.transformer.{module}"]
    for stem in spellings:
        state = other | {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
                         f"{stem}.alpha": torch.tensor(2.0)}
        rest, t5 = split_t5(state, {module})
        a_key, b_key = f"text_encoder_2.{module}.lora_A.weight", f"text_encoder_2.{module}.lora_B.weight"
        assert rest == other and set(t5) == {a_key, b_key}
        a, b = t5[a_key], t5[b_key]
        assert torch.allclose(b @ a, 0.5 * up @ down)
    peft = {f"text_encoder_2.{module}.lora_A.weight": down}
    assert split_t5(dict(peft), {module}) == ({}, peft)
    with pytest.raises(KeyLayoutError, match="lora_te3_encoder_block_7"):
        split_t5({"lora_te3_encoder_block_7_layer_0_SelfAttention_q.lora_down.weight": down}, {module})
