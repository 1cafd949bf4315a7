"""The flow families' single-file parts below the CLI: bundled configs of the released models, Qwen text encoder
files told apart by their tensors, the user's Qwen tokenizer found beside a file (or refused by name), and the
Z-Image key mapping's inverse."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sdcli.errors import ModelError
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


def test_the_qwen_tokenizer_comes_from_a_folder_beside_the_file_or_is_refused(tmp_path):
    from sdcli.models.flow_load import qwen_tokenizer
    from sdcli.models.tiny_qwen import tiny_qwen_tokenizer

    encoder, model = tmp_path / "te" / "qwen_3_4b.safetensors", tmp_path / "m" / "z.safetensors"
    with pytest.raises(ModelError) as info:
        qwen_tokenizer((encoder, model), "Qwen3")
    message = str(info.value)
    assert message.startswith("--text-encoder: qwen_3_4b.safetensors needs its Qwen3 tokenizer") and "\n" not in message
    assert str(tmp_path / "te" / "tokenizer") in message and str(tmp_path / "m" / "tokenizer") in message
    tiny_qwen_tokenizer().save_pretrained(tmp_path / "m" / "tokenizer")
    tokenizer = qwen_tokenizer((encoder, model), "Qwen3")
    assert tokenizer("<|im_start|>a", add_special_tokens=False)["input_ids"] == tiny_qwen_tokenizer()(
        "<|im_start|>a", add_special_tokens=False)["input_ids"]


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
