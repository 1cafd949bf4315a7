"""The flow families other than Flux.1 from single files through `sdcli txt2img`: each tiny model's transformer
written in every layout people download (original, ComfyUI's prefix, diffusers' names, GGUF) with its text encoder
and VAE as separate files gives the diffusers folder's pixels exactly; missing or wrong parts are refused in one
line naming the flag; ComfyUI models folders work offline and `sdcli models` names each file. (The rows, fixtures
and helpers: tests/cli/flow_files.py; all-in-one checkpoints, GGUF text encoders and BFL's Flux.2 VAE:
test_flow_parts_cli.py.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.cli.flow_files import (
    CASES,
    ROWS,
    RUN,
    offline,
    part_flags,
    pixels,
)


@pytest.mark.parametrize("key,layout", CASES)
def test_every_layout_gives_the_folders_pixels(cli, flow_files, flow_pixels, tmp_path, key, layout):
    written = flow_files[key][layout]
    assert np.array_equal(pixels(cli, tmp_path / "o", written["transformer"], *part_flags(written)), flow_pixels[key])


@pytest.mark.parametrize("key", ROWS)
def test_other_weights_and_a_quantized_gguf_give_other_pixels(cli, flow_files, flow_pixels, tmp_path, key):
    """The equality above can fail: a transformer of other weights with the same parts. A Q8_0 GGUF stays
    quantized and within a few levels (32 wide; measured: Z-Image 1 level at most, mean 0.06; Qwen-Image 1,
    mean 0.001; Flux.2 0) or, where no tiny row fills a 32-value block (Chroma, 16 wide), falls back to F32 in every
    tensor, as city96's tool does, and equals."""
    from gguf import GGUFReader

    other = flow_files[key]["other"]
    assert not np.array_equal(pixels(cli, tmp_path / "a", other["transformer"], *part_flags(other)), flow_pixels[key])
    q8 = flow_files[key]["gguf-Q8_0"]
    types = {t.tensor_type.name for t in GGUFReader(q8["transformer"]).tensors}
    diff = np.abs(pixels(cli, tmp_path / "b", q8["transformer"], *part_flags(q8)) - flow_pixels[key])
    if ROWS[key].q8_blocks:
        assert "Q8_0" in types and diff.max() <= 4, (types, diff.max())
    else:
        assert types == {"F32"} and diff.max() == 0


@pytest.mark.parametrize("key", ROWS)
def test_missing_or_wrong_parts_are_refused_in_one_line(cli, flow_files, tmp_path, key):
    written, row = flow_files[key]["comfy"], ROWS[key]
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
def test_comfy_folders_offline_and_sdcli_models(cli, flow_files, flow_pixels, tmp_path, monkeypatch, key):
    """Parts found in a ComfyUI install (diffusion_models/, text_encoders/, vae/) with every socket failing and
    empty Hugging Face caches; `sdcli models --json` names each file's family and kind."""
    written = flow_files[key]["gguf"]
    comfy = tmp_path / "ComfyUI" / "models"
    for sub, part in (("diffusion_models", "transformer"), ("text_encoders", ROWS[key].encoder), ("vae", "vae")):
        (comfy / sub).mkdir(parents=True)
        shutil.copy(written[part], comfy / sub / written[part].name)
    offline(tmp_path, monkeypatch)
    got = pixels(cli, tmp_path / "o", written["transformer"].stem, "--comfy-dir", comfy.parent)
    assert np.array_equal(got, flow_pixels[key])

    result = cli("models", "--comfy-dir", comfy.parent, "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: (r["kind"], r["what"]) for r in map(json.loads, result.stdout.splitlines())}
    assert what == ROWS[key].models


def test_a_text_encoder_with_a_diffusers_folder_is_refused(cli, tiny_family, flow_files, tmp_path):
    folder = tiny_family("zimage")
    result = cli("txt2img", "-m", folder, *RUN, "-o", tmp_path / "o", "--text-encoder",
                 flow_files["zimage"]["comfy"]["qwen3"], "a cat")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --text-encoder: {folder.name} is not a transformer file; separate text "
                                    "encoders go with a Flux.1, Chroma, Z-Image, Qwen-Image or Flux.2 (klein, dev)")


def test_webui_models_folder_parts_are_found_written_as_modules_and_replay(cli, flow_files, flow_pixels, tmp_path):
    """A Forge models folder (Stable-diffusion/, text_encoder/, VAE/) gives a Z-Image transformer its parts by
    name, the same pixels, and the infotext names them as Forge's `Module N`; the image replays alone."""
    from sdcli.io.metadata import read_infotext

    written = flow_files["zimage"]["original"]
    root = tmp_path / "models"
    for kind, part in (("Stable-diffusion", "transformer"), ("text_encoder", "qwen3"), ("VAE", "vae")):
        (root / kind).mkdir(parents=True)
        shutil.copy(written[part], root / kind / written[part].name)
    out = tmp_path / "o"
    result = cli("txt2img", "--models-dir", root, "-m", written["transformer"].stem, *RUN, "-o", out, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png), dtype=np.int16), flow_pixels["zimage"])
    assert read_infotext(png).endswith("Module 1: ae, Module 2: qwen_3_4b")
    result = cli("replay", png, "-o", tmp_path / "again")  # the record names the files: no models folder needed
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(next((tmp_path / "again").glob("*.png"))), dtype=np.int16),
                          flow_pixels["zimage"])


def test_a_gguf_text_encoder_is_refused_by_name(cli, flow_files, tmp_path):
    """A GGUF whose llama.cpp-named tensors make no text encoder sdcli knows (a lone attention weight: no token
    embedding) is refused naming the flag and what is wanted."""
    import gguf

    path = tmp_path / "qwen_3_4b-Q8_0.gguf"
    writer = gguf.GGUFWriter(path=str(path), arch="qwen3")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    written = flow_files["zimage"]["comfy"]
    result = cli("txt2img", "-m", written["transformer"], *RUN, "-o", tmp_path / "o", "--text-encoder", path,
                 "--vae", written["vae"], "a cat")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --text-encoder: {path.name} is not a Qwen3 text encoder (not a model "
                                    "part sdcli knows)")


@pytest.mark.parametrize("key", ROWS)
def test_img2img_from_a_gguf_gives_the_folders_pixels(cli, tiny_family, flow_files, flow_pixels, tmp_path, key):
    """Another mode from a GGUF file: the model moves to its img2img pipeline with the quantized transformer kept
    as it is (diffusers refuses to cast it) and gives the folder's img2img pixels."""
    source = tmp_path / "in.png"
    Image.fromarray(flow_pixels[key].astype(np.uint8)).save(source)
    written = flow_files[key]["gguf"]
    args = ("img2img", "-i", source, "--steps", "2", "--seed", "3", "--strength", "0.6")
    ours = cli(*args, "-m", written["transformer"], *part_flags(written), "-o", tmp_path / "a", "a cat")
    theirs = cli(*args, "-m", tiny_family(ROWS[key].arch), "-o", tmp_path / "b", "a cat")
    assert ours.exit_code == 0 and theirs.exit_code == 0, ours.stderr + theirs.stderr
    pixels = [np.asarray(Image.open(next((tmp_path / o).glob("*.png"))), dtype=np.int16) for o in "ab"]
    assert np.array_equal(*pixels)
