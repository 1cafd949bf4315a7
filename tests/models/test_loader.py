import hashlib
import json
import shutil

import pytest

from sdcli.errors import ModelError
from sdcli.models.resolve import check_model_folder, model_hash, resolve_model


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_local_folder_resolves_without_network(tiny_model):
    ref = resolve_model(str(tiny_model))
    assert ref.path == tiny_model.resolve() and not ref.is_demo


def test_no_model_builds_the_demo_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SDCLI_CACHE", str(tmp_path))
    first = resolve_model(None)
    assert first.is_demo and (first.path / "model_index.json").is_file()
    stamp = (first.path / "unet" / "config.json").stat().st_mtime_ns
    assert resolve_model(None).path == first.path
    assert (first.path / "unet" / "config.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("spec", ["./missing-folder", "/no/such/model"])
def test_missing_path(spec):
    with pytest.raises(ModelError, match=f"--model: no such folder: {spec}"):
        resolve_model(spec)


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        resolve_model(str(tmp_path))


def test_pickle_only_weights_are_refused(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    unet = model / "unet" / "diffusion_pytorch_model.safetensors"
    unet.rename(unet.with_suffix(".bin"))
    with pytest.raises(ModelError, match=r"unet holds only pickle weights"):
        check_model_folder(model)


def test_truncated_safetensors_is_named(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    vae = model / "vae" / "diffusion_pytorch_model.safetensors"
    vae.write_bytes(vae.read_bytes()[:-1000])
    with pytest.raises(ModelError, match=r"vae/diffusion_pytorch_model.safetensors is truncated"):
        check_model_folder(model)


def test_garbage_safetensors_is_named(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    te = model / "text_encoder" / "model.safetensors"
    te.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelError, match=r"text_encoder/model.safetensors is not a valid safetensors"):
        check_model_folder(model)


def test_hub_id_offline_and_not_cached():
    with pytest.raises(ModelError, match="someone/some-model is not in the local hub cache"):
        resolve_model("someone/some-model", offline=True)


def test_hub_id_resolves_from_the_hub_cache_offline(tmp_path, tiny_model, monkeypatch):
    # The standard hub cache layout: models--org--name/{refs/main, snapshots/<rev>/...}.
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    rev = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    ref = resolve_model("org/tiny", offline=True)
    assert ref.path == repo / "snapshots" / rev and ref.name == "org/tiny"


def test_model_hash_follows_the_documented_rule(tmp_path, tiny_model):
    digest = hashlib.sha256()
    files = sorted(p for p in tiny_model.rglob("*")
                   if p.is_file() and p.suffix in (".safetensors", ".json", ".txt"))
    for p in files:
        digest.update(p.relative_to(tiny_model).as_posix().encode() + b"\0" + p.read_bytes())
    assert model_hash(tiny_model) == digest.hexdigest()[:10]
    model = copy_model(tiny_model, tmp_path / "m")
    cfg = model / "unet" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "note": 1}))
    assert model_hash(model) != model_hash(tiny_model)


def test_hf_hub_offline_env_is_honoured(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in the local hub cache and offline mode is on"):
        resolve_model("someone/other-model", offline=False)


def test_local_path_never_calls_the_hub(tiny_model, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was called for a local path")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    assert resolve_model(str(tiny_model)).path == tiny_model.resolve()


def test_a_pipeline_built_elsewhere_is_a_loaded_model_of_its_family(tiny_pipe):
    from sdcli.models.loaded import LoadedModel

    other = LoadedModel.of(tiny_pipe.pipe, "sd1")
    assert other.detected == tiny_pipe.detected and other.native_size == tiny_pipe.native_size == 64
    assert other.addons is not tiny_pipe.addons  # sdcli's state is per loaded model, not on the pipeline
