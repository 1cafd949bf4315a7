"""The models folder: layouts, WebUI-style name lookup, close matches, cached file hashes."""

from __future__ import annotations

import hashlib
import os

import pytest

from sdcli.errors import ModelError, UsageError
from sdcli.models.folders import library_from
from sdcli.models.hashes import file_sha256 as file_hash
from sdcli.models.resolve import resolve_model


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "models"
    for rel in ("Stable-diffusion/v1-5-pruned.safetensors", "Stable-diffusion/anime/anything-v3.safetensors",
                "Stable-diffusion/anime/anything-v4.safetensors", "Stable-diffusion/old.ckpt",
                "Lora/detail.safetensors", "Lora/style/painterly.safetensors", "Lora/notes.txt",
                "embeddings/easyneg.safetensors", "VAE/vae-ft-mse.safetensors"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    (root / "Stable-diffusion" / "diffusers-model").mkdir()
    (root / "Stable-diffusion" / "diffusers-model" / "model_index.json").write_text("{}")
    return root


def names(library, kind):
    return [e.name for e in library.entries(kind)]


def test_lists_each_kind_as_the_webui_does(folder):
    library = library_from(folder, None)
    assert names(library, "checkpoint") == ["anime/anything-v3", "anime/anything-v4", "diffusers-model", "old",
                                            "v1-5-pruned"]
    assert names(library, "lora") == ["detail", "style/painterly"]
    assert names(library, "embedding") == ["easyneg"] and names(library, "vae") == ["vae-ft-mse"]


def test_webui_dir_layout(tmp_path):
    (tmp_path / "models" / "Lora").mkdir(parents=True)
    (tmp_path / "models" / "Lora" / "x.safetensors").write_bytes(b"x")
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "e.pt").write_bytes(b"e")
    library = library_from(None, tmp_path)
    assert names(library, "lora") == ["x"] and names(library, "embedding") == ["e"]


@pytest.mark.parametrize("name, expected", [
    ("v1-5-pruned", "v1-5-pruned"), ("v1-5-pruned.safetensors", "v1-5-pruned"),
    ("anime/anything-v3.safetensors", "anime/anything-v3"), ("anything-v4", "anime/anything-v4"),
    ("diffusers-model", "diffusers-model"), ("pruned", "v1-5-pruned"),
    ("anime/anything-v3.safetensors [0123456789]", "anime/anything-v3")])
def test_find_by_webui_names(folder, name, expected):
    assert library_from(folder, None).find("checkpoint", name).name == expected


def test_find_by_short_hash(folder):
    path = folder / "Stable-diffusion" / "old.ckpt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert library_from(folder, None).find("checkpoint", digest).path == path


def test_ambiguous_and_unknown_names_are_one_clear_error(folder):
    library = library_from(folder, None)
    with pytest.raises(ModelError, match=r"--model: 'anything' matches several checkpoints in .*: "
                                         r"anime/anything-v3\.safetensors, anime/anything-v4\.safetensors"):
        library.find("checkpoint", "anything")
    with pytest.raises(ModelError, match=r"--lora: no lora named 'detial' in .*Lora; did you mean detail\?"):
        library.find("lora", "detial")


def test_missing_folder_flag_is_named(tmp_path):
    with pytest.raises(UsageError, match="--models-dir: no such folder"):
        library_from(tmp_path / "nope", None)


def test_resolve_model_looks_names_up_in_the_models_folder(models_dir, tiny_model):
    library = library_from(models_dir, None)
    assert resolve_model("tiny", library=library).path == tiny_model.resolve()
    with pytest.raises(ModelError, match="no checkpoint named 'tinny'.*did you mean tiny"):
        resolve_model("tinny", library=library)


def test_file_hash_is_sha256_and_cached_by_path_size_mtime(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"weights")
    assert file_hash(path) == hashlib.sha256(b"weights").hexdigest()
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    assert file_hash(path) == hashlib.sha256(b"weights").hexdigest()
    assert path not in opened  # not read again
    monkeypatch.undo()
    path.write_bytes(b"other!!")
    os.utime(path, ns=(1, 1))
    assert file_hash(path) == hashlib.sha256(b"other!!").hexdigest()
