"""The flow families' single-file parts below the CLI: bundled configs of the released models, Qwen text encoder
files told apart by their tensors, and the Z-Image key mapping's inverse (the Qwen and Mistral tokenizers:
tests/models/test_llm_tokenizers.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sdcli.models.flux_files import inspect_flux_file


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_bundled_zimage_configs_build_the_released_sizes():
    """Qwen3-4B's model card: 4.0B parameters, 3.6B without the embedding; Z-Image: the 6B transformer; the
    caption embedder reads the text encoder's width."""
    import diffusers
    import transformers

    from sdcli.models.bundled import family_config

    spec = family_config("zimage")
    with torch.device("meta"):
        transformer = diffusers.ZImageTransformer2DModel.from_config(spec["transformer"])
        text = transformers.Qwen3Model(transformers.Qwen3Config(**spec["text_encoder"]))
        vae = diffusers.AutoencoderKL.from_config(spec["vae"])
    assert _count(text) == 4_022_468_096 and _count(text) - 151_936 * 2560 == 3_633_511_936
    assert round(_count(transformer) / 1e9, 2) == 6.15
    assert _count(vae) == 83_819_683  # the Flux VAE's (tests/models/test_flux_bundle.py)
    assert spec["transformer"]["cap_feat_dim"] == spec["text_encoder"]["hidden_size"]


@pytest.mark.parametrize("prefix", ["", "model."])
def test_a_qwen3_file_is_told_apart_from_its_tensors(tmp_path, prefix):
    keys = {"embed_tokens.weight": (10, 8), "layers.0.self_attn.q_norm.weight": (4,),
            "layers.0.self_attn.q_proj.weight": (8, 8), "norm.weight": (8,)}
    path = tmp_path / "qwen_3_4b.safetensors"
    save_file({prefix + k: torch.zeros(s) for k, s in keys.items()}, str(path))
    info = inspect_flux_file(path)
    assert (info.kind, info.prefix, info.width) == ("qwen3", prefix, 8)
    save_file({prefix + k: torch.zeros(s) for k, s in keys.items() if "q_norm" not in k}, str(path))
    assert inspect_flux_file(path).kind == "mistral3"  # no q_norm: not Qwen3; the Llama layout of Mistral Small 3
    biased = {**{k: v for k, v in keys.items() if "q_norm" not in k}, "layers.0.self_attn.q_proj.bias": (8,)}
    save_file({prefix + k: torch.zeros(s) for k, s in biased.items()}, str(path))
    assert inspect_flux_file(path).kind is None  # Qwen2.5's biased projections without its vision tower: neither


def test_the_zimage_writer_inverts_diffusers_converter(tiny_family):
    """diffusers' convert_z_image_transformer_checkpoint_to_diffusers undoes zimage_to_original exactly."""
    from diffusers import ZImageTransformer2DModel

    from sdcli.models.flow_load import diffusers_converter
    from sdcli.models.zimage_files import zimage_to_original

    model = ZImageTransformer2DModel.from_pretrained(tiny_family("zimage") / "transformer")
    state = model.state_dict()
    original = zimage_to_original(state)
    assert "layers.0.attention.qkv.weight" in original and "x_embedder.weight" in original
    assert not any(".to_q." in k or "all_" in k for k in original)
    back = diffusers_converter("ZImageTransformer2DModel")(original, dict(model.config))
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_the_bundled_chroma_config_builds_the_8_9b_transformer():
    """Chroma's published size: 8.9B parameters (Flux schnell's 12B less its modulation layers, plus the
    approximator)."""
    import diffusers

    from sdcli.models.bundled import family_config

    spec = family_config("chroma")
    with torch.device("meta"):
        transformer = diffusers.ChromaTransformer2DModel.from_config(spec["transformer"])
    assert round(_count(transformer) / 1e9, 1) == 8.9
    assert spec["transformer"]["joint_attention_dim"] == spec["text_encoder"]["d_model"]


def test_chroma_keys_round_trip_at_any_width_and_diffusers_agrees_at_the_released_one(tiny_family):
    """chroma_to_diffusers(chroma_to_original(state)) is the state exactly (tiny, 16 wide); at 3072 wide diffusers'
    own converter gives the same names and tensors (a random released-width model on a few blocks)."""
    from diffusers import ChromaTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_chroma_transformer_checkpoint_to_diffusers

    from sdcli.models.chroma_files import chroma_to_diffusers, chroma_to_original

    tiny = ChromaTransformer2DModel.from_pretrained(tiny_family("chroma") / "transformer").state_dict()
    original = chroma_to_original(tiny)
    assert "distilled_guidance_layer.layers.0.in_layer.weight" in original
    assert "single_blocks.0.linear1.weight" in original
    assert "distilled_guidance_layer.norms.0.scale" in original and not any("to_q" in k for k in original)
    back = chroma_to_diffusers(original)
    assert set(back) == set(tiny) and all(torch.equal(back[k], tiny[k]) for k in tiny)
    wide = ChromaTransformer2DModel(num_layers=1, num_single_layers=1, approximator_layers=1,
                                    approximator_hidden_dim=32).state_dict()
    ours = chroma_to_diffusers(chroma_to_original(wide))
    theirs = convert_chroma_transformer_checkpoint_to_diffusers(chroma_to_original(wide))
    assert set(ours) == set(theirs) == set(wide) and all(torch.equal(ours[k], theirs[k]) for k in wide)


def test_the_bundled_qwen_image_configs_build_the_released_sizes():
    """Qwen-Image: the 20B transformer; Qwen2.5-VL-7B: 8.29B parameters (its model card); the Wan 2.1 VAE: 127M;
    the transformer reads the text encoder's width."""
    import diffusers
    import transformers

    from sdcli.models.bundled import family_config

    spec = family_config("qwen-image")
    with torch.device("meta"):
        transformer = diffusers.QwenImageTransformer2DModel.from_config(spec["transformer"])
        text = transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(**spec["text_encoder"]))
        vae = diffusers.AutoencoderKLQwenImage.from_config(spec["vae"])
    assert round(_count(transformer) / 1e9, 1) == 20.4
    assert round(_count(text) / 1e9, 2) == 8.29
    assert round(_count(vae) / 1e6) == 127
    assert spec["transformer"]["joint_attention_dim"] == spec["text_encoder"]["text_config"]["hidden_size"]


@pytest.mark.parametrize("language,visual", [("model.", "visual."), ("model.language_model.", "model.visual.")])
def test_a_qwen25_vl_file_is_told_apart_in_either_naming(tmp_path, language, visual):
    from sdcli.models.qwenimage_files import to_checkpoint_names, to_transformers

    keys = {language + "embed_tokens.weight": (10, 8), language + "layers.0.self_attn.q_proj.bias": (8,),
            visual + "patch_embed.proj.weight": (4, 3, 2, 2, 2), "lm_head.weight": (10, 8)}
    path = tmp_path / "qwen_2.5_vl_7b.safetensors"
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    info = inspect_flux_file(path)
    assert (info.kind, info.width) == ("qwen2.5-vl", 8)
    names = set(to_transformers(dict.fromkeys(keys)))
    assert names == {"model.language_model.embed_tokens.weight", "model.language_model.layers.0.self_attn.q_proj.bias",
                     "model.visual.patch_embed.proj.weight", "lm_head.weight"}
    assert set(to_checkpoint_names(dict.fromkeys(names))) == {
        "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias", "visual.patch_embed.proj.weight",
        "lm_head.weight"}


def test_the_qwen_vae_loads_from_wan_or_diffusers_names_and_diffusers_agrees_at_the_released_size(
        tiny_family, tmp_path):
    """The tiny Qwen-Image VAE (1 residual block a level) written in Wan 2.1's names and in diffusers' loads back
    exactly; at the released size (2 a level) diffusers' own convert_wan_vae_to_diffusers undoes
    diffusers_to_wan, so the names are the ones ComfyUI's file has."""
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from sdcli.models.bundled import family_config
    from sdcli.models.qwenimage_files import load_qwen_vae
    from sdcli.models.wan_vae_keys import diffusers_to_wan

    vae = AutoencoderKLQwenImage.from_pretrained(tiny_family("qwen-image") / "vae")
    state = vae.state_dict()
    wan = diffusers_to_wan(state)
    assert "decoder.upsamples.2.resample.1.weight" in wan and "encoder.head.2.weight" in wan  # 2 resnets, upsampler
    for name, tensors in (("wan", wan), ("diffusers", state)):
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        assert (inspect_flux_file(path).kind, inspect_flux_file(path).layout) == ("qwen-vae", name)
        loaded = load_qwen_vae(path, torch.float32, dict(vae.config)).state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    with torch.device("meta"):
        released = AutoencoderKLQwenImage.from_config(family_config("qwen-image")["vae"]).state_dict()
    names = {k: k for k in released}  # each value its own name: a swapped pair of blocks would show
    assert convert_wan_vae_to_diffusers(diffusers_to_wan(names)) == names
    assert set(diffusers_to_wan(names)) != set(names)


def test_the_bundled_flux2_klein_configs_build_the_4b_and_9b_models():
    """Klein 4B: 3.88B parameters (5 double + 20 single blocks, 3072 wide); its text input is Qwen3-4B's three
    hidden states side by side; likewise Klein 9B with Qwen3-8B."""
    import diffusers

    from sdcli.models.bundled import family_config

    spec = family_config("flux2-klein-4b")
    with torch.device("meta"):
        transformer = diffusers.Flux2Transformer2DModel.from_config(spec["transformer"])
    assert round(_count(transformer) / 1e9, 2) == 3.88
    assert spec["transformer"]["joint_attention_dim"] == 3 * spec["text_encoder"]["hidden_size"]
    # Klein 9B: 9.08B; Qwen3-8B: 8.19B, 6.95B without its untied embedding and head (its model card)
    import transformers

    spec = family_config("flux2-klein-9b")
    with torch.device("meta"):
        transformer = diffusers.Flux2Transformer2DModel.from_config(spec["transformer"])
        text = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**spec["text_encoder"]))
    assert round(_count(transformer) / 1e9, 2) == 9.08
    assert round(_count(text) / 1e9, 2) == 8.19 and round((_count(text) - 2 * 151_936 * 4096) / 1e9, 2) == 6.95
    assert spec["transformer"]["joint_attention_dim"] == 3 * spec["text_encoder"]["hidden_size"]


def test_the_bundled_flux2_dev_config_builds_the_32b_model_and_mistral_small_3():
    """Flux.2 dev: 32.2B parameters (BFL's "32B"; diffusers' Flux2Transformer2DModel defaults); its text input is
    Mistral Small 3's three hidden states side by side, the text model 22.9B (24B with its head and vision tower)."""
    import diffusers
    import transformers

    from sdcli.models.bundled import family_config

    spec = family_config("flux2-dev")
    with torch.device("meta"):
        transformer = diffusers.Flux2Transformer2DModel.from_config(spec["transformer"])
        text = transformers.MistralModel(transformers.MistralConfig(**spec["text_encoder"]))
    assert round(_count(transformer) / 1e9, 1) == 32.2 and transformer.config.guidance_embeds
    assert round(_count(text) / 1e9, 1) == 22.9
    assert spec["transformer"]["joint_attention_dim"] == 3 * spec["text_encoder"]["hidden_size"]
    # What parameter counts cannot tell, as mistralai/Mistral-Small-3.1-24B-Instruct-2503's config.json text_config
    # publishes it (Mistral Small 3.2's text-only configs give the same; Small 3 2501's had rope_theta 1e8, 32k).
    published = {"rope_theta": 1e9, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "sliding_window": None,
                 "head_dim": 128, "vocab_size": 131072}
    assert {k: spec["text_encoder"][k] for k in published} == published


def test_flux2_keys_invert_diffusers_converter(tiny_family):
    """diffusers' convert_flux2_transformer_checkpoint_to_diffusers undoes flux2_to_original exactly (the final
    modulation's halves swapped back)."""
    from diffusers import Flux2Transformer2DModel

    from sdcli.models.flow_load import diffusers_converter
    from sdcli.models.flux2_files import flux2_to_original

    model = Flux2Transformer2DModel.from_pretrained(tiny_family("flux2-klein") / "transformer")
    state = model.state_dict()
    original = flux2_to_original(state)
    assert "double_blocks.0.img_attn.qkv.weight" in original and "single_blocks.0.linear1.weight" in original
    assert "double_blocks.0.img_attn.norm.query_norm.scale" in original
    assert not torch.equal(original["final_layer.adaLN_modulation.1.weight"], state["norm_out.linear.weight"])
    back = diffusers_converter("Flux2Transformer2DModel")(original, dict(model.config))
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_an_fp8_transformer_file_loads_as_its_weights_rounded_to_fp8(tiny_family, tmp_path):
    """Z-Image's original layout stored in float8_e4m3fn (as ComfyUI's fp8 files): each weight comes back as the
    fp32 weight rounded to fp8, computed in fp32."""
    from diffusers import ZImageTransformer2DModel

    from sdcli.models.flow_load import load_transformer
    from sdcli.models.zimage_files import zimage_to_original

    model = ZImageTransformer2DModel.from_pretrained(tiny_family("zimage") / "transformer")
    state = model.state_dict()
    path = tmp_path / "z_image_fp8.safetensors"
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in zimage_to_original(state).items()}, str(path))
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    loaded = load_transformer("ZImageTransformer2DModel", path, torch.float32, config, "", False)
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v.to(torch.float8_e4m3fn).float()) for k, v in state.items())
    assert not all(torch.equal(got[k], v) for k, v in state.items())


def test_the_flux2_vae_names_round_trip_at_the_released_size():
    """BFL's names of the released Flux.2 VAE (4 levels of 2 resnets) convert back to every diffusers key with its
    shape; the quant convolutions sit inside the encoder and decoder, the up blocks are numbered from the bottom."""
    from diffusers import AutoencoderKLFlux2

    from sdcli.models.bundled import family_config
    from sdcli.models.flux2_files import flux2_vae_to_bfl, flux2_vae_to_diffusers

    with torch.device("meta"):
        vae = AutoencoderKLFlux2.from_config(family_config("flux2-klein-4b")["vae"])
    state = {k: v for k, v in vae.state_dict().items() if k != "bn.num_batches_tracked"}
    bfl = flux2_vae_to_bfl(state, 4)
    assert bfl["decoder.up.3.block.0.conv1.weight"].shape == state["decoder.up_blocks.0.resnets.0.conv1.weight"].shape
    assert {"encoder.quant_conv.weight", "decoder.post_quant_conv.bias", "bn.running_var"} <= set(bfl)
    assert bfl["decoder.mid.attn_1.proj_out.weight"].ndim == 4  # 1x1 convolutions, as the ldm layout stores them
    back = flux2_vae_to_diffusers(bfl, dict(vae.config))
    assert set(back) == set(state) and all(back[k].shape == state[k].shape for k in state)


def test_a_gguf_text_encoder_is_read_in_the_compute_dtype(tmp_path):
    """Each dequantized tensor is cast as it is read (a 4B encoder in float32 would be 16 GB): bf16 in, bf16 out,
    every transformers name of the model back, a Q8_0 weight within its quantization step of the original."""
    import transformers

    from sdcli.models.gguf_text import read_gguf_encoder, write_gguf_encoder
    from sdcli.models.tiny_zimage import ZIMAGE_QWEN3

    config = transformers.Qwen3Config(**ZIMAGE_QWEN3, vocab_size=64)
    model = transformers.Qwen3Model(config)
    path = write_gguf_encoder(model, tmp_path / "qwen3-Q8_0.gguf", "Q8_0")
    state = read_gguf_encoder(path, transformers.Qwen3Model, config, torch.bfloat16)
    assert set(state) == set(model.state_dict()) and {v.dtype for v in state.values()} == {torch.bfloat16}
    weight = model.state_dict()["layers.0.mlp.down_proj.weight"]
    step = weight.abs().max() / 127
    assert (state["layers.0.mlp.down_proj.weight"].float() - weight).abs().max() <= step


def test_an_all_in_one_header_names_each_part_by_its_own_tensors():
    """held_parts: Qwen3 under text_encoders.qwen3_4b.transformer.model., the Flux VAE under vae.; SD3's three text
    encoders (CLIP-G has CLIP-L's names) give clip_l the one ComfyUI calls clip_l; a 4-channel SD VAE is no part."""
    from sdcli.models.flux_files import held_parts

    qwen = {"embed_tokens.weight": [10, 8], "layers.0.self_attn.q_norm.weight": [4]}
    flux_vae = {"encoder.conv_out.weight": [32, 8, 3, 3], "encoder.conv_in.weight": [8, 3, 3, 3],
                "encoder.down.0.block.0.conv1.weight": [8, 8, 3, 3]}
    clip = {"text_model.embeddings.position_embedding.weight": [77, 8]}
    t5 = {"encoder.block.0.layer.0.SelfAttention.q.weight": [8, 8]}

    def table(parts):
        shapes = {p + k: v for p, keys in parts.items() for k, v in keys.items()}
        return held_parts(shapes, dict.fromkeys(shapes, "F32"))

    assert table({"model.diffusion_model.": {"x": [1]}, "text_encoders.qwen3_4b.transformer.model.": qwen,
                  "vae.": flux_vae}) == {"qwen3": "text_encoders.qwen3_4b.transformer.model.", "vae": "vae."}
    sd3 = table({"text_encoders.clip_g.transformer.": clip, "text_encoders.clip_l.transformer.": clip,
                 "text_encoders.t5xxl.transformer.": t5, "first_stage_model.": flux_vae})
    assert sd3 == {"clip_l": "text_encoders.clip_l.transformer.", "t5xxl": "text_encoders.t5xxl.transformer.",
                   "vae": "first_stage_model."}
    sd_vae = {**flux_vae, "encoder.conv_out.weight": [8, 8, 3, 3]}
    assert table({"first_stage_model.": sd_vae}) == {}
