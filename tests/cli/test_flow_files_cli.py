"""The flow families other than Flux.1 from single files through `sdcli txt2img`: each tiny model's transformer
written in every layout people download (original, ComfyUI's prefix, diffusers' names, GGUF) with its text encoder
and VAE as separate files gives the diffusers folder's pixels exactly; missing or wrong parts are refused in one
line naming the flag; ComfyUI models folders work offline and `sdcli models` names each file."""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")


@dataclass(frozen=True)
class FileRow:
    """One family's files: its tiny arch, writer (module:function), pipeline class, text encoder part."""

    arch: str
    writer: str
    pipeline: str
    encoder: str  # the text encoder's part as the writer names it
    needs: str  # the refusal's words for the missing encoder
    kind: str  # what the refusal of another kind of encoder calls the one it needs
    models: dict[str, tuple[str, str]]  # file name -> (`sdcli models` kind, what) for the gguf layout's files
    q8_blocks: bool = True  # the tiny transformer's rows fill Q8_0's 32-value blocks (16 wide: every tensor F32)
    layouts: tuple[str, ...] = ("original", "comfy", "diffusers", "gguf")  # the writer's transformer layouts
    vae: str = "give the Flux VAE (ae.safetensors)"  # the refusal's words for the missing VAE


ROWS = {
    "zimage": FileRow("zimage", "sdcli.models.zimage_files:write_zimage_files", "ZImagePipeline",
                      "qwen3", "give the Qwen3 encoder (qwen_3_4b.safetensors)", "Qwen3",
                      {"z_image": ("diffusion_model", "zimage transformer (gguf, fp32)"),
                       "qwen_3_4b": ("text_encoder", "qwen3 text encoder (fp32)"),
                       "ae": ("vae", "flux vae (ldm, fp32)")}),
    "chroma": FileRow("chroma", "sdcli.models.chroma_files:write_chroma_files", "ChromaPipeline",
                      "t5xxl", "give the T5-XXL encoder (t5xxl_fp16.safetensors)", "T5-XXL",
                      {"chroma": ("diffusion_model", "chroma transformer (gguf, fp32)"),
                       "t5xxl": ("text_encoder", "t5xxl text encoder (fp32)"),
                       "ae": ("vae", "flux vae (ldm, fp32)")}, q8_blocks=False),
    "qwenimage": FileRow("qwen-image", "sdcli.models.qwenimage_files:write_qwenimage_files", "QwenImagePipeline",
                         "qwen25vl", "give the Qwen2.5-VL encoder (qwen_2.5_vl_7b.safetensors)", "Qwen2.5-VL",
                         {"qwen_image": ("diffusion_model", "qwen-image transformer (gguf, fp32)"),
                          "qwen_2.5_vl_7b": ("text_encoder", "qwen2.5_vl text encoder (fp32)"),
                          "qwen_image_vae": ("vae", "qwen vae (wan, fp32)")},
                         layouts=("original", "comfy", "gguf"),
                         vae="give the Qwen-Image VAE (qwen_image_vae.safetensors)"),
    "flux2": FileRow("flux2-klein", "sdcli.models.flux2_files:write_flux2_files", "Flux2KleinPipeline",
                     "qwen3", "give the Qwen3 encoder (qwen_3_4b.safetensors)", "Qwen3",
                     {"flux-2-klein": ("diffusion_model", "flux2-klein transformer (gguf, fp32)"),
                      "qwen_3_4b": ("text_encoder", "qwen3 text encoder (fp32)"),
                      "flux2-vae": ("vae", "flux2 vae (diffusers, fp32)")},
                     vae="give the Flux.2 VAE (flux2-vae.safetensors)"),
    "flux2-dev": FileRow("flux2-dev", "sdcli.models.flux2_files:write_flux2_files", "Flux2Pipeline",
                         "mistral3", "give the Mistral Small 3 encoder (mistral_3_small_flux2_bf16.safetensors)",
                         "Mistral Small 3",
                         {"flux2_dev": ("diffusion_model", "flux2-dev transformer (gguf, fp32)"),
                          "mistral_3_small_flux2_bf16": ("text_encoder", "mistral3 text encoder (fp32)"),
                          "flux2-vae": ("vae", "flux2 vae (diffusers, fp32)")},
                         vae="give the Flux.2 VAE (flux2-vae.safetensors)"),
}
LAYOUTS = ("original", "comfy", "diffusers", "gguf")
CASES = [(key, layout) for key, row in ROWS.items() for layout in row.layouts]


def _writer(row: FileRow):
    import importlib

    module, name = row.writer.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def pipes(tiny_family):
    """The tiny diffusers pipeline of each row (seed 0), loaded once."""
    import diffusers

    return {key: getattr(diffusers, row.pipeline).from_pretrained(tiny_family(row.arch), local_files_only=True)
            for key, row in ROWS.items()}


@pytest.fixture(scope="module")
def files(pipes, tmp_path_factory):
    """key -> layout -> part -> file (gguf: F32; "gguf-Q8_0"; "other": original layout, other weights)."""
    import torch

    root = tmp_path_factory.mktemp("flow-files")
    out: dict[str, dict[str, dict[str, Path]]] = {}
    for key, row in ROWS.items():
        write, pipe = _writer(row), pipes[key]
        out[key] = {layout: write(pipe, root / key / layout, layout, "F32") for layout in row.layouts}
        out[key]["gguf-Q8_0"] = write(pipe, root / key / "q8", "gguf", "Q8_0")
        other = {k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
                 for k, v in pipe.transformer.state_dict().items()}
        changed = type(pipe.transformer).from_config(pipe.transformer.config)
        changed.load_state_dict(other)
        out[key]["other"] = write(SimpleNamespace(transformer=changed, text_encoder=pipe.text_encoder, vae=pipe.vae),
                                  root / key / "other", "original", "F32")
    return out


@pytest.fixture(scope="module")
def folder_pixels(tiny_family, tmp_path_factory):
    from typer.testing import CliRunner

    from sdcli.cli import app

    out = {}
    for key, row in ROWS.items():
        folder = tmp_path_factory.mktemp(f"{key}-png")
        result = CliRunner().invoke(app, ["txt2img", "-m", str(tiny_family(row.arch)), *RUN, "-o", str(folder),
                                          "a cat"])
        assert result.exit_code == 0, result.stderr
        out[key] = np.asarray(Image.open(next(folder.glob("*.png"))), dtype=np.int16)
    return out


def _pixels(cli, out: Path, model, *args) -> np.ndarray:
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def _parts(written: dict[str, Path]) -> tuple[str, ...]:
    encoder = next(path for part, path in written.items() if part not in ("transformer", "vae"))
    return ("--text-encoder", str(encoder), "--vae", str(written["vae"]))


@pytest.mark.parametrize("key,layout", CASES)
def test_every_layout_gives_the_folders_pixels(cli, files, folder_pixels, tmp_path, key, layout):
    written = files[key][layout]
    assert np.array_equal(_pixels(cli, tmp_path / "o", written["transformer"], *_parts(written)), folder_pixels[key])


@pytest.mark.parametrize("key", ROWS)
def test_other_weights_and_a_quantized_gguf_give_other_pixels(cli, files, folder_pixels, tmp_path, key):
    """The equality above can fail: a transformer of other weights with the same parts. A Q8_0 GGUF stays
    quantized and within a few levels (32 wide; measured: Z-Image 1 level at most, mean 0.06; Qwen-Image 1,
    mean 0.001; Flux.2 0) or, where no tiny row fills a 32-value block (Chroma, 16 wide), falls back to F32 in every
    tensor, as city96's tool does, and equals."""
    from gguf import GGUFReader

    other = files[key]["other"]
    assert not np.array_equal(_pixels(cli, tmp_path / "a", other["transformer"], *_parts(other)), folder_pixels[key])
    q8 = files[key]["gguf-Q8_0"]
    types = {t.tensor_type.name for t in GGUFReader(q8["transformer"]).tensors}
    diff = np.abs(_pixels(cli, tmp_path / "b", q8["transformer"], *_parts(q8)) - folder_pixels[key])
    if ROWS[key].q8_blocks:
        assert "Q8_0" in types and diff.max() <= 4, (types, diff.max())
    else:
        assert types == {"F32"} and diff.max() == 0


@pytest.mark.parametrize("key", ROWS)
def test_missing_or_wrong_parts_are_refused_in_one_line(cli, files, tmp_path, key):
    written, row = files[key]["comfy"], ROWS[key]
    model = written["transformer"]
    cases = [
        (("--vae", written["vae"]), f"--text-encoder: {model.name} holds only the transformer; {row.needs} with "
                                    "--text-encoder FILE|NAME, or put it in"),
        (("--text-encoder", written[row.encoder]), f"--vae: {model.name} holds only the transformer; {row.vae} "
                                               "with --vae FILE|NAME, or put it in"),
        (("--text-encoder", written["vae"], "--vae", written["vae"]),
         f"--text-encoder: {written['vae'].name} is not a {row.kind} text encoder "
         f"({row.models[written['vae'].stem][1]})"),
    ]
    for args, message in cases:
        result = cli("txt2img", "-m", model, *RUN, "-o", tmp_path / "o", *args, "a cat")
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith("error: " + message) and result.stderr.count("\n") == 1, result.stderr
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("key", ROWS)
def test_comfy_folders_offline_and_sdcli_models(cli, files, folder_pixels, tmp_path, monkeypatch, key):
    """Parts found in a ComfyUI install (diffusion_models/, text_encoders/, vae/) with every socket failing and
    empty Hugging Face caches; `sdcli models --json` names each file's family and kind."""
    import huggingface_hub.constants

    written = files[key]["gguf"]
    comfy = tmp_path / "ComfyUI" / "models"
    for sub, part in (("diffusion_models", "transformer"), ("text_encoders", ROWS[key].encoder), ("vae", "vae")):
        (comfy / sub).mkdir(parents=True)
        shutil.copy(written[part], comfy / sub / written[part].name)
    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(name, str(hf))
        monkeypatch.setattr(huggingface_hub.constants, name, str(hf))

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    pixels = _pixels(cli, tmp_path / "o", written["transformer"].stem, "--comfy-dir", comfy.parent)
    assert np.array_equal(pixels, folder_pixels[key])

    result = cli("models", "--comfy-dir", comfy.parent, "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: (r["kind"], r["what"]) for r in map(json.loads, result.stdout.splitlines())}
    assert what == ROWS[key].models


def test_a_text_encoder_with_a_diffusers_folder_is_refused(cli, tiny_family, files, tmp_path):
    folder = tiny_family("zimage")
    result = cli("txt2img", "-m", folder, *RUN, "-o", tmp_path / "o", "--text-encoder",
                 files["zimage"]["comfy"]["qwen3"], "a cat")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --text-encoder: {folder.name} is not a transformer file; separate text "
                                    "encoders go with a Flux.1, Chroma, Z-Image, Qwen-Image or Flux.2 (klein, dev)")


def test_webui_models_folder_parts_are_found_written_as_modules_and_replay(cli, files, folder_pixels, tmp_path):
    """A Forge models folder (Stable-diffusion/, text_encoder/, VAE/) gives a Z-Image transformer its parts by
    name, the same pixels, and the infotext names them as Forge's `Module N`; the image replays alone."""
    from sdcli.io.metadata import read_infotext

    written = files["zimage"]["original"]
    root = tmp_path / "models"
    for kind, part in (("Stable-diffusion", "transformer"), ("text_encoder", "qwen3"), ("VAE", "vae")):
        (root / kind).mkdir(parents=True)
        shutil.copy(written[part], root / kind / written[part].name)
    out = tmp_path / "o"
    result = cli("txt2img", "--models-dir", root, "-m", written["transformer"].stem, *RUN, "-o", out, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png), dtype=np.int16), folder_pixels["zimage"])
    assert read_infotext(png).endswith("Module 1: ae, Module 2: qwen_3_4b")
    result = cli("replay", png, "-o", tmp_path / "again")  # the record names the files: no models folder needed
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "again").glob("*.png"))), dtype=np.int16),
                          folder_pixels["zimage"])


def test_a_gguf_text_encoder_is_refused_by_name(cli, files, tmp_path):
    """city96's GGUF text encoders use llama.cpp's tensor names: not read as a Qwen3 encoder, refused naming the
    flag and what is wanted."""
    import gguf

    path = tmp_path / "qwen_3_4b-Q8_0.gguf"
    writer = gguf.GGUFWriter(path=str(path), arch="qwen3")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    written = files["zimage"]["comfy"]
    result = cli("txt2img", "-m", written["transformer"], *RUN, "-o", tmp_path / "o", "--text-encoder", path,
                 "--vae", written["vae"], "a cat")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --text-encoder: {path.name} is not a Qwen3 text encoder (not a model "
                                    "part sdcli knows)")


@pytest.mark.parametrize("key", ROWS)
def test_img2img_from_a_gguf_gives_the_folders_pixels(cli, tiny_family, files, folder_pixels, tmp_path, key):
    """Another mode from a GGUF file: the model moves to its img2img pipeline with the quantized transformer kept
    as it is (diffusers refuses to cast it) and gives the folder's img2img pixels."""
    source = tmp_path / "in.png"
    Image.fromarray(folder_pixels[key].astype(np.uint8)).save(source)
    written = files[key]["gguf"]
    args = ("img2img", "-i", source, "--steps", "2", "--seed", "3", "--strength", "0.6")
    ours = cli(*args, "-m", written["transformer"], *_parts(written), "-o", tmp_path / "a", "a cat")
    theirs = cli(*args, "-m", tiny_family(ROWS[key].arch), "-o", tmp_path / "b", "a cat")
    assert ours.exit_code == 0 and theirs.exit_code == 0, ours.stderr + theirs.stderr
    pixels = [np.asarray(Image.open(next((tmp_path / o).glob("*.png"))), dtype=np.int16) for o in "ab"]
    assert np.array_equal(*pixels)
