"""Flux.1's bundled configs and tokenizers: the published architectures, the real T5 v1.1 tokenizer,
tiny stand-ins, a user's own T5 tokenizer beside the model, and a Flux config folder that diffusers'
FluxPipeline loads with every socket failing and an empty hub cache."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from sdcli.errors import ModelError
from sdcli.models.bundled import cached_config_folder, family_config, write_config_folder
from sdcli.models.tokenizer_files import (
    T5_TOKENIZER_SHA256,
    TINY_T5_VOCAB,
    TINY_VOCAB,
    user_tokenizers,
    write_t5_tokenizer,
    write_tiny_t5_tokenizer,
    write_tiny_tokenizer,
)

FLUX = ["flux-dev", "flux-schnell", "flux-fill"]
# Parameter counts of the published Flux.1 models: transformer, VAE, CLIP-L, T5 v1.1 XXL encoder.
PUBLISHED = {
    "flux-dev": [11_901_408_320, 83_819_683, 123_060_480, 4_762_310_656],
    "flux-schnell": [11_891_178_560, 83_819_683, 123_060_480, 4_762_310_656],  # no guidance embedder
    "flux-fill": [11_902_391_360, 83_819_683, 123_060_480, 4_762_310_656],  # 384 input channels
}
CAT_CLIP = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat", CLIP ViT-L/14
CAT_T5 = [3, 9, 1202, 13, 3, 9, 1712, 1]  # "a photo of a cat", T5 v1.1


def _model_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("architectures", "model_type")}


@pytest.mark.parametrize("family", FLUX)
def test_bundled_flux_configs_build_the_published_models(family):
    """Built on the meta device (no memory) from the bundled configs: the published parameter counts."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    config = family_config(family)
    with torch.device("meta"):
        models = [FluxTransformer2DModel.from_config(config["transformer"]),
                  AutoencoderKL.from_config(config["vae"]),
                  CLIPTextModel(CLIPTextConfig(**_model_config(config["text_encoder"]))),
                  T5EncoderModel(T5Config(**_model_config(config["text_encoder_2"])))]
    assert [sum(p.numel() for p in m.parameters()) for m in models] == PUBLISHED[family]
    t5 = models[3].config
    assert (t5.is_gated_act, t5.dense_act_fn, t5.vocab_size) == (True, "gelu_new", 32128)
    scheduler = config["scheduler"]
    dynamic = family != "flux-schnell"
    assert scheduler["use_dynamic_shifting"] is dynamic and config["transformer"]["guidance_embeds"] is dynamic
    assert (scheduler["base_shift"], scheduler["max_shift"]) == (0.5, 1.15)
    assert scheduler["shift"] == (3.0 if dynamic else 1.0)
    assert config["model_index"]["_class_name"] == ("FluxFillPipeline" if family == "flux-fill" else "FluxPipeline")


def test_bundled_t5_tokenizer_is_t5_v1_1(tmp_path):
    from transformers import CLIPTokenizer, T5TokenizerFast

    write_t5_tokenizer(tmp_path / "alone")
    assert hashlib.sha256((tmp_path / "alone" / "tokenizer.json").read_bytes()).hexdigest() == T5_TOKENIZER_SHA256
    folder = write_config_folder(family_config("flux-dev"), tmp_path / "flux")
    assert sorted(p.name for p in (folder / "tokenizer_2").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    t5 = T5TokenizerFast.from_pretrained(folder / "tokenizer_2", local_files_only=True)
    assert len(t5) == 32100 and t5.model_max_length == 512
    assert t5.convert_tokens_to_ids(["<pad>", "</s>", "<unk>", "▁the", "<extra_id_0>", "<extra_id_99>"]) == [
        0, 1, 2, 8, 32099, 32000]
    assert t5("a photo of a cat").input_ids == CAT_T5
    assert t5("a photo of a dog").input_ids != CAT_T5
    clip = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    assert clip("a photo of a cat").input_ids == CAT_CLIP and clip.model_max_length == 77


def test_tiny_t5_tokenizer_is_character_level_with_t5_special_ids(tmp_path):
    from transformers import T5TokenizerFast

    assert write_tiny_t5_tokenizer(tmp_path) == TINY_T5_VOCAB
    tok = T5TokenizerFast.from_pretrained(tmp_path, local_files_only=True)
    assert len(tok) == TINY_T5_VOCAB
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("a cat ☃", padding="max_length", max_length=12).input_ids
    a, c, t = tok.convert_tokens_to_ids(["a", "c", "t"])
    word = tok.convert_tokens_to_ids("▁")
    assert ids == [word, a, word, c, a, t, word, 2, 1, 0, 0, 0]  # ☃ is unknown; </s>, then padding
    assert max(tok("<extra_id_0> ÿ " * 20).input_ids) < TINY_T5_VOCAB  # no extra ids beyond the vocabulary


def test_tiny_tokenizer_set_writes_tiny_clip_and_tiny_t5(tmp_path):
    folder = write_config_folder(family_config("flux-schnell"), tmp_path, tokenizer="tiny")
    assert len(json.loads((folder / "tokenizer" / "vocab.json").read_text())) == TINY_VOCAB
    vocab = json.loads((folder / "tokenizer_2" / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == TINY_T5_VOCAB
    assert json.loads((folder / "tokenizer_2" / "tokenizer_config.json").read_text())["extra_ids"] == 0
    assert json.loads((folder / "transformer" / "config.json").read_text())["guidance_embeds"] is False


def test_a_tokenizer_2_folder_beside_the_model_replaces_the_bundled_t5(tmp_path):
    spec = family_config("flux-dev")
    assert user_tokenizers(spec, tmp_path) == {}
    mine = tmp_path / "tokenizer_2"
    write_tiny_t5_tokenizer(mine)
    assert user_tokenizers(spec, tmp_path) == {"tokenizer_2": mine}
    assert user_tokenizers(family_config("sdxl"), tmp_path) == {}  # a CLIP tokenizer_2 is never the user's
    root = tmp_path / "cache"
    bundled = cached_config_folder(spec, root)
    used = cached_config_folder(spec, root, user_tokenizers={"tokenizer_2": mine})
    assert used != bundled
    assert (used / "tokenizer_2" / "tokenizer.json").read_bytes() == (mine / "tokenizer.json").read_bytes()
    assert (bundled / "tokenizer_2" / "tokenizer.json").read_bytes() != (mine / "tokenizer.json").read_bytes()
    assert cached_config_folder(spec, root, user_tokenizers={"tokenizer_2": mine}) == used
    (mine / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256, "extra_ids": 0}))
    edited = cached_config_folder(spec, root, user_tokenizers={"tokenizer_2": mine})
    assert edited != used and json.loads((edited / "tokenizer_2" / "tokenizer_config.json").read_text()) == {
        "model_max_length": 256, "extra_ids": 0}


def test_a_bad_user_t5_folder_fails_in_one_line_naming_the_file(tmp_path, monkeypatch):
    import importlib.util

    spec = family_config("flux-fill")
    mine = tmp_path / "tokenizer_2"
    mine.mkdir()
    with pytest.raises(ModelError, match=r"tokenizer_2 \(your T5 tokenizer.*missing tokenizer.json \(or spiece"):
        user_tokenizers(spec, tmp_path)
    write_tiny_tokenizer(mine)  # CLIP's BPE files
    (mine / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    with pytest.raises(ModelError, match="tokenizer.json is not a SentencePiece"):
        user_tokenizers(spec, tmp_path)
    (mine / "tokenizer.json").unlink()
    (mine / "spiece.model").write_bytes(b"\x0a")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match=r"spiece.model needs the sentencepiece and protobuf packages") as err:
        user_tokenizers(spec, tmp_path)
    assert "\n" not in str(err.value)


TINY_FLUX = {
    "transformer": {"in_channels": 16, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
                    "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
                    "axes_dims_rope": [4, 6, 6]},
    "vae": {"latent_channels": 4, "block_out_channels": [16, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
            "sample_size": 32},
    "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "projection_dim": 32, "vocab_size": TINY_VOCAB, "pad_token_id": TINY_VOCAB - 1,
                     "bos_token_id": TINY_VOCAB - 2, "eos_token_id": TINY_VOCAB - 1},
    "text_encoder_2": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2,
                       "vocab_size": TINY_T5_VOCAB},
}


def _tiny_flux_folder(folder: Path) -> dict:
    """The bundled flux-dev configs at tiny widths, written with tiny tokenizers and random weights saved in."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    spec = family_config("flux-dev")
    for part, changes in TINY_FLUX.items():
        spec[part].update(changes)
    write_config_folder(spec, folder, tokenizer="tiny")
    torch.manual_seed(0)
    models = {"transformer": FluxTransformer2DModel.from_config(spec["transformer"]),
              "vae": AutoencoderKL.from_config(spec["vae"]),
              "text_encoder": CLIPTextModel(CLIPTextConfig(**_model_config(spec["text_encoder"]))),
              "text_encoder_2": T5EncoderModel(T5Config(**_model_config(spec["text_encoder_2"])))}
    for part, model in models.items():
        model.save_pretrained(folder / part)
    return models


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """Every socket connection fails and the Hugging Face caches are an empty folder (returned); offline mode
    is off, so only local_files_only and sdcli's own files keep a load off the network."""
    import diffusers.utils.constants
    import huggingface_hub.constants

    hf = tmp_path / "hf-home"
    hf.mkdir()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(name, str(hf))
        if hasattr(huggingface_hub.constants, name):
            monkeypatch.setattr(huggingface_hub.constants, name, str(hf))
    monkeypatch.setattr(diffusers.utils.constants, "HF_MODULES_CACHE", str(hf / "modules"))

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return hf


def test_a_written_tiny_flux_folder_loads_and_runs_offline(tmp_path, no_network):
    import torch
    from diffusers import FluxPipeline

    with pytest.raises(OSError):  # the guard is on
        socket.create_connection(("127.0.0.1", 9))
    models = _tiny_flux_folder(tmp_path / "flux")
    pipe = FluxPipeline.from_pretrained(tmp_path / "flux", local_files_only=True)
    assert type(pipe.tokenizer_2).__name__ in ("T5TokenizerFast", "T5Tokenizer")
    assert len(pipe.tokenizer_2) == TINY_T5_VOCAB
    assert torch.equal(pipe.transformer.x_embedder.weight, models["transformer"].x_embedder.weight)
    assert torch.equal(pipe.text_encoder_2.shared.weight, models["text_encoder_2"].shared.weight)

    def run(prompt: str) -> torch.Tensor:
        return pipe(prompt, height=32, width=32, num_inference_steps=2, guidance_scale=3.5, max_sequence_length=16,
                    generator=torch.Generator().manual_seed(1), output_type="pt").images

    cat = run("a photo of a cat")
    assert cat.shape == (1, 3, 32, 32) and torch.isfinite(cat).all()
    assert torch.equal(run("a photo of a cat"), cat)
    assert not torch.equal(run("a photo of a dog"), cat)  # the prompt reaches the model through both tokenizers
    assert list(no_network.iterdir()) == []  # nothing fetched, nothing cached


def test_every_bundled_vocabulary_file_has_its_licence_notice():
    from sdcli.models.bundled import CONFIGS

    notices = (CONFIGS / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8")
    for path in sorted(CONFIGS.glob("*.gz")) + sorted(CONFIGS.glob("*.xz")):
        assert f"sdcli/models/configs/{path.name}" in notices, path.name
    assert "Apache License" in notices and "Version 2.0, January 2004" in notices and "MIT" in notices
