"""The parts of the flow families' single files beyond transformer-only files: all-in-one checkpoints in ComfyUI's
layout, GGUF text encoders in llama.cpp's names, and Flux.2's VAE in BFL's names; each gives the diffusers folder's
pixels exactly (a quantized GGUF within a stated bound), `sdcli models` names each. The rows and fixtures:
tests/cli/flow_files.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.cli.flow_files import (
    AIO_ROWS,
    ROWS,
    offline,
    part_flags,
    pixels,
)


@pytest.fixture(scope="module")
def bundles(flow_files, tmp_path_factory):
    """key -> an all-in-one checkpoint in ComfyUI's layout of the comfy files, and of the other transformer's."""
    from sdcli.models.flow_write import write_all_in_one

    root = tmp_path_factory.mktemp("flow-aio")
    out = {}
    for key in AIO_ROWS:
        for name in ("comfy", "other"):
            parts = {p: f for p, f in flow_files[key][name].items()}
            out[key, name] = write_all_in_one(parts, root / name / f"{key}_aio.safetensors")
    return out


@pytest.mark.parametrize("key", AIO_ROWS)
def test_an_all_in_one_checkpoint_gives_the_folders_pixels(cli, bundles, flow_pixels, tmp_path, monkeypatch, key):
    """ComfyUI's checkpoint layout (transformer under model.diffusion_model., the text encoder under
    text_encoders.<name>.transformer., the VAE under vae.) loads with no --text-encoder or --vae, each part told
    apart by its own tensors, and equals the folder, by name from ComfyUI's checkpoints/ and offline; the same
    checkpoint with other transformer weights does not (a part read from elsewhere would show). `sdcli models`
    names what it holds."""
    from sdcli.models.flux_files import inspect_flux_file

    row, aio = ROWS[key], bundles[key, "comfy"]
    info = inspect_flux_file(aio)
    bfl_names = key in ("chroma", "flux2")  # BFL's block names: read by Flux.1's classifier, told apart by family
    assert info.kind == ("flux-all-in-one" if bfl_names else "all-in-one"), info
    assert info.parts == ("transformer", row.encoder, "vae") and info.prefix == "model.diffusion_model."
    comfy = tmp_path / "ComfyUI" / "models" / "checkpoints"
    comfy.mkdir(parents=True)
    shutil.copy(aio, comfy / aio.name)
    offline(tmp_path, monkeypatch)
    got = pixels(cli, tmp_path / "a", aio.stem, "--comfy-dir", comfy.parent.parent)
    assert np.array_equal(got, flow_pixels[key])
    assert not np.array_equal(pixels(cli, tmp_path / "b", bundles[key, "other"]), flow_pixels[key])
    result = cli("models", "--comfy-dir", comfy.parent.parent, "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = map(json.loads, result.stdout.splitlines())
    assert (record["kind"], record["what"]) == (
        "checkpoint", f"{row.arch} all-in-one (transformer + {row.encoder} + vae, fp32)"), record


GGUF_ENCODERS = ("zimage", "chroma", "flux2")  # Qwen3 (Qwen3Model; Flux.2: Qwen3ForCausalLM) and T5-XXL


@pytest.mark.parametrize("key", GGUF_ENCODERS)
def test_a_gguf_text_encoder_gives_the_folders_pixels(cli, flow_pipes, flow_files, flow_pixels, tmp_path, key):
    """A text encoder as a GGUF in llama.cpp's names (city96's T5 encoder GGUFs, the Qwen3 GGUFs ComfyUI-GGUF
    takes), written with the gguf package: F32 equals the folder; Q8_0 (every 2-D weight of over 1,024 values
    quantized) stays within a few levels and is not exact (measured: max 1, 2, 1 levels; mean 0.02, 0.35, 0.001 for
    Z-Image, Chroma, Flux.2); `sdcli models` names each (ComfyUI's text_encoders/ lists .gguf files)."""
    from gguf import GGUFReader

    from sdcli.models.gguf_text import write_gguf_encoder

    written, encoder = flow_files[key]["comfy"], flow_pipes[key].text_encoder
    rest = (written["transformer"], "--vae", written["vae"])
    folder = tmp_path / "ComfyUI" / "models" / "text_encoders"
    f32 = write_gguf_encoder(encoder, folder / f"{key}-encoder-F32.gguf", "F32")
    q8 = write_gguf_encoder(encoder, folder / f"{key}-encoder-Q8_0.gguf", "Q8_0")
    assert {t.name.split(".")[0] for t in GGUFReader(f32).tensors} <= {"token_embd", "blk", "enc", "output_norm",
                                                                       "output"}
    model, *flags = rest
    assert np.array_equal(pixels(cli, tmp_path / "a", model, "--text-encoder", f32, *flags), flow_pixels[key])
    assert "Q8_0" in {t.tensor_type.name for t in GGUFReader(q8).tensors}
    q8_pixels = pixels(cli, tmp_path / "b", model, "--text-encoder", q8, *flags)
    assert np.abs(q8_pixels - flow_pixels[key]).max() <= 4 and not np.array_equal(q8_pixels, flow_pixels[key])
    result = cli("models", "--comfy-dir", tmp_path / "ComfyUI", "--kind", "text_encoder", "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: r["what"] for r in map(json.loads, result.stdout.splitlines()) if r["kind"] == "text_encoder"}
    name = ROWS[key].encoder.replace("-", "_")
    assert what == {f"{key}-encoder-F32": f"{name} text encoder (fp32)", f"{key}-encoder-Q8_0": f"{name} text "
                    "encoder (q8_0)"}, what


def test_the_flux2_vae_in_bfl_names_gives_the_folders_pixels(cli, flow_pipes, flow_files, flow_pixels, tmp_path):
    """BFL's Flux.2 ae.safetensors names (Flux.1's ldm names, quant convolutions inside the encoder and decoder,
    the batch-norm statistics bn.*), as diffusers' convert_flux2_to_diffusers.py reads them: the folder's pixels;
    the statistics are the file's (other ones give other pixels); `sdcli models` names it."""
    from safetensors.torch import load_file, save_file

    from sdcli.models.flux2_files import write_flux2_files
    from sdcli.models.flux_files import inspect_flux_file

    written = write_flux2_files(flow_pipes["flux2"], tmp_path / "bfl", "comfy", bfl_vae=True)
    vae = written["vae"]
    names = set(load_file(str(vae)))
    assert {"encoder.quant_conv.weight", "decoder.post_quant_conv.weight", "bn.running_mean", "bn.running_var",
            "encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight", "encoder.norm_out.weight",
            "encoder.mid.attn_1.q.weight"} <= names and not any("down_blocks" in k for k in names)
    assert (inspect_flux_file(vae).kind, inspect_flux_file(vae).layout) == ("flux2-vae", "ldm")
    assert np.array_equal(pixels(cli, tmp_path / "a", *_model_and_parts(written)), flow_pixels["flux2"])
    other = {k: v * 2 if k == "bn.running_var" else v for k, v in load_file(str(vae)).items()}
    save_file(other, str(tmp_path / "bfl" / "other_ae.safetensors"))
    changed = {**written, "vae": tmp_path / "bfl" / "other_ae.safetensors"}
    assert not np.array_equal(pixels(cli, tmp_path / "b", *_model_and_parts(changed)), flow_pixels["flux2"])
    result = cli("models", "--comfy-dir", _comfy_with_vae(tmp_path, vae), "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["what"] for line in result.stdout.splitlines()] == ["flux2 vae (ldm, fp32)"]


def _model_and_parts(written: dict[str, Path]) -> tuple[str, ...]:
    return (str(written["transformer"]), *part_flags(written))


def _comfy_with_vae(tmp_path: Path, vae: Path) -> Path:
    folder = tmp_path / "ComfyUI" / "models" / "vae"
    folder.mkdir(parents=True)
    shutil.copy(vae, folder / vae.name)
    return tmp_path / "ComfyUI"
