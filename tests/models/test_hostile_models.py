"""Hostile model folders and caches: one clear line each, and reading never blocks."""

import json
import os
import shutil

import pytest

from sdcli.errors import ModelError
from sdcli.models.resolve import cache_dir, check_model_folder, model_hash


@pytest.mark.parametrize("where", ["model_index.json", "unet/config.json", "vae/diffusion_pytorch_model.safetensors"])
def test_a_fifo_in_a_model_folder_is_refused_without_blocking(tiny_model, tmp_path, where):
    model = shutil.copytree(tiny_model, tmp_path / "m")
    (model / where).unlink()
    os.mkfifo(model / where)  # opening it for reading would wait for a writer forever
    with pytest.raises(ModelError, match=rf"{where} is not a regular file \(a FIFO, device or socket\)"):
        check_model_folder(model)


def test_a_json_list_as_model_index_is_a_model_error(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "m")
    (model / "model_index.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="is not a diffusers model index"):
        check_model_folder(model)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"x": [1]}', "not json", '"text"'])
def test_a_damaged_hash_cache_is_rebuilt(tiny_model, content):
    expected = model_hash(tiny_model)
    cache = cache_dir() / "hashes.json"
    cache.write_text(content)
    assert model_hash(tiny_model) == expected
    # the cache keeps the full SHA-256; the model hash is its first 10 hex digits
    assert any(isinstance(v, str) and v.startswith(expected) for v in json.loads(cache.read_text()).values())


def test_the_offline_message_says_offline_only_when_asked(monkeypatch):
    from sdcli.models.resolve import resolve_model

    with pytest.raises(ModelError, match="offline mode is on"):
        resolve_model("someone/missing-model", offline=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("connection failed and not in the cache")

    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    with pytest.raises(ModelError) as caught:
        resolve_model("someone/missing-model")
    assert "offline" not in str(caught.value) and "the hub could not be reached" in str(caught.value)
