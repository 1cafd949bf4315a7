"""Textual-inversion embeddings on the tiny model: formats, prompt trigger, misfits."""

from __future__ import annotations

import numpy as np
import pytest

from sdcli.errors import ModelError
from sdcli.models.assets import AssetOptions, encoder_text, plan_assets
from sdcli.models.embeddings import EmbeddingSpec, apply_embeddings, mentioned, read_vectors
from sdcli.models.tiny_assets import write_tiny_embedding


@pytest.fixture(scope="module")
def pipe(tiny_model):
    from tests.conftest import _load_on_cpu

    loaded = _load_on_cpu(tiny_model)
    yield loaded
    apply_embeddings(loaded, [])


def pixels(pipe, prompt: str) -> np.ndarray:
    import torch

    from sdcli.conditioning.encoding import ClipPromptEncoder

    encoder = ClipPromptEncoder(pipe.pipe.tokenizer, pipe.pipe.text_encoder)
    positive, negative = encoder.encode_pair(encoder_text(pipe, prompt), "")
    out = pipe.pipe(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=2, width=32,
               height=32, output_type="np", generator=torch.Generator().manual_seed(1))
    return np.asarray(out.images)


@pytest.mark.parametrize("name, fmt, vectors", [("emb_st.safetensors", "webui", 2), ("emb_pt.pt", "webui", 1),
                                                ("emb_diff.safetensors", "diffusers", 1),
                                                ("emb_xl.safetensors", "sdxl", 3)])
def test_formats_read_to_vectors(tmp_path, name, fmt, vectors):
    path = write_tiny_embedding(tmp_path / name, fmt=fmt, vectors=vectors)
    if path.suffix == ".pt":
        with pytest.raises(ModelError, match="pickle file"):
            read_vectors(path)
    found = read_vectors(path, allow_pickle=path.suffix == ".pt")
    assert found["clip_l"].shape == (vectors, 32)
    assert ("clip_g" in found) == (fmt == "sdxl")


def test_embedding_changes_the_image_only_where_named(pipe, tmp_path):
    path = write_tiny_embedding(tmp_path / "tinyword.safetensors", vectors=2, seed=5)
    apply_embeddings(pipe, [])
    plain = pixels(pipe, "a cat tinyword")  # before loading: the word is just characters
    apply_embeddings(pipe, [EmbeddingSpec(path, "tinyword", "h")])
    assert encoder_text(pipe, "a cat tinyword") == "a cat tinyword tinyword_1"  # two vectors
    assert not np.array_equal(pixels(pipe, "a cat tinyword"), plain)
    apply_embeddings(pipe, [])
    assert np.array_equal(pixels(pipe, "a cat tinyword"), plain)


def test_wrong_width_is_refused_by_name(pipe, tmp_path):
    path = write_tiny_embedding(tmp_path / "wide.safetensors", width=768)
    with pytest.raises(ModelError, match=r"--embedding: .*wide\.safetensors has vectors of width 768; "
                                         r"this model's text encoder needs 32"):
        apply_embeddings(pipe, [EmbeddingSpec(path, "wide", "h")])


def test_sdxl_embedding_is_refused_on_a_one_encoder_model(pipe, tmp_path):
    path = write_tiny_embedding(tmp_path / "xl.safetensors", fmt="sdxl")
    with pytest.raises(ModelError, match=r"--embedding: .*xl\.safetensors is an SDXL embedding"):
        apply_embeddings(pipe, [EmbeddingSpec(path, "xl", "h")])


def test_trigger_is_a_whole_word():
    assert mentioned("easyneg", "a cat, easyneg")
    assert mentioned("bad-hands-5", "(bad-hands-5:1.2)")
    assert not mentioned("easyneg", "a cat, easynegative") and not mentioned("neg", "easyneg")


def test_folder_embeddings_are_used_when_named_and_recorded(models_dir):
    options = AssetOptions(models_dir=str(models_dir))
    assert plan_assets(options, "a cat").embeddings == ()
    plan = plan_assets(options, "a cat", "tinyemb, blurry")
    assert [e.name for e in plan.embeddings] == ["tinyemb"]
    assert plan.params()["TI hashes"] == f"tinyemb: {plan.embeddings[0].hash}" and len(plan.embeddings[0].hash) == 12
