"""llama.cpp GGUFs of the flow families' big text encoders through the CLI: Mistral Small 3 (Flux.2 dev's; the
"llama" architecture of the 2025 files, "mistral3" of llama.cpp's converter since) and Qwen2.5-VL's language model
(Qwen-Image's; "qwen2vl", the vision tower in a separate mmproj file). The files are written as llama.cpp's
converter writes them (tests/reference/llama_cpp_gguf.py, an independent transcription: names, metadata, the
query / key row order of the llama layout); F32 gives the diffusers folder's pixels exactly (the safetensors files
do too: test_flow_files_cli.py), Q8_0 stays within a stated bound, and a llama file whose rows were not reordered
gives other pixels (so sdcli's reversal is what makes the F32 file equal)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.flow_files import pixels
from tests.reference.llama_cpp_gguf import write_text_gguf


def _mistral_gguf(pipe, dest: Path, arch: str, qtype: str = "F32", interleave: bool = True) -> Path:
    """The tiny Flux.2 dev pipeline's Mistral Small 3 text model as llama.cpp's GGUF."""
    encoder = pipe.text_encoder
    return write_text_gguf(encoder.model.language_model, encoder.lm_head.weight, dest, arch, qtype,
                           interleave=interleave)


def _qwen_gguf(pipe, dest: Path, qtype: str = "F32") -> Path:
    """The tiny Qwen-Image pipeline's Qwen2.5-VL language model as llama.cpp's qwen2vl GGUF."""
    encoder = pipe.text_encoder
    return write_text_gguf(encoder.model.language_model, encoder.lm_head.weight, dest, "qwen2vl", qtype,
                           name="Qwen2.5-VL-7B-Instruct")


@pytest.mark.parametrize("arch", ["llama", "mistral3"])
def test_a_mistral_gguf_gives_the_folders_pixels(cli, flow_pipes, flow_files, flow_pixels, tmp_path, arch):
    """Flux.2 dev with a Mistral Small 3 GGUF: F32 equals the folder; the same file with its query / key rows left
    in transformers' order (not as llama.cpp writes them) does not; Q8_0 (every 2-D weight) stays within a few
    levels and is not exact (measured: max 1 level, mean 0.003, for both architectures)."""
    from gguf import GGUFReader

    pipe, written = flow_pipes["flux2-dev"], flow_files["flux2-dev"]["comfy"]
    model, flags = written["transformer"], ("--vae", written["vae"])
    f32 = _mistral_gguf(pipe, tmp_path / f"mistral-{arch}-F32.gguf", arch)
    assert np.array_equal(pixels(cli, tmp_path / "a", model, "--text-encoder", f32, *flags), flow_pixels["flux2-dev"])
    unordered = _mistral_gguf(pipe, tmp_path / "unordered.gguf", arch, interleave=False)
    assert not np.array_equal(pixels(cli, tmp_path / "b", model, "--text-encoder", unordered, *flags),
                              flow_pixels["flux2-dev"])
    q8 = _mistral_gguf(pipe, tmp_path / "q8.gguf", arch, "Q8_0")
    assert "Q8_0" in {t.tensor_type.name for t in GGUFReader(q8).tensors}
    diff = np.abs(pixels(cli, tmp_path / "c", model, "--text-encoder", q8, *flags) - flow_pixels["flux2-dev"])
    assert 0 < diff.max() <= 4, diff.max()


def test_a_mistral_gguf_is_found_in_the_models_folder_and_named(cli, flow_pipes, flow_files, flow_pixels, tmp_path):
    """A Mistral GGUF in ComfyUI's text_encoders/ is Flux.2 dev's text encoder with no --text-encoder, and `sdcli
    models` names it."""
    written = flow_files["flux2-dev"]["comfy"]
    comfy = tmp_path / "ComfyUI" / "models"
    _mistral_gguf(flow_pipes["flux2-dev"], comfy / "text_encoders" / "Mistral-Small-3.2-24B-Q8_0.gguf", "llama", "Q8_0")
    (comfy / "vae").mkdir(parents=True)
    shutil.copy(written["vae"], comfy / "vae" / written["vae"].name)
    got = pixels(cli, tmp_path / "a", written["transformer"], "--comfy-dir", comfy.parent)
    assert np.abs(got - flow_pixels["flux2-dev"]).max() <= 4
    result = cli("models", "--comfy-dir", comfy.parent, "--kind", "text_encoder", "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["what"] for line in result.stdout.splitlines()] == ["mistral3 text encoder (q8_0)"]


def test_a_qwen25_vl_gguf_gives_the_folders_pixels_in_txt2img_img2img_and_inpaint(cli, flow_pipes, flow_files,
                                                                                   flow_pixels, tmp_path):
    """Qwen-Image with a Qwen2.5-VL GGUF (the language model only): txt2img's F32 pixels equal the folder's,
    img2img's and inpaint's equal those of the safetensors encoder (vision tower and all); Q8_0 within a few levels
    (measured: max 1 level, mean 0.007)."""
    pipe, written = flow_pipes["qwenimage"], flow_files["qwenimage"]["comfy"]
    model, flags = written["transformer"], ("--vae", written["vae"])
    f32 = _qwen_gguf(pipe, tmp_path / "qwen2.5-vl-7b-F32.gguf")
    assert np.array_equal(pixels(cli, tmp_path / "a", model, "--text-encoder", f32, *flags), flow_pixels["qwenimage"])
    q8 = _qwen_gguf(pipe, tmp_path / "qwen2.5-vl-7b-Q8_0.gguf", "Q8_0")
    diff = np.abs(pixels(cli, tmp_path / "b", model, "--text-encoder", q8, *flags) - flow_pixels["qwenimage"])
    assert 0 < diff.max() <= 4, diff.max()
    source, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(flow_pixels["qwenimage"].astype(np.uint8)).save(source)
    mask_image = Image.new("L", (32, 32), 0)
    mask_image.paste(255, (8, 8, 24, 24))
    mask_image.save(mask)
    for command, extra in (("img2img", ()), ("inpaint", ("--mask", mask))):
        runs = []
        for out, encoder in (("gguf", f32), ("safetensors", written["qwen25vl"])):
            folder = tmp_path / command / out
            result = cli(command, "-i", source, *extra, "--steps", "2", "--seed", "3", "--strength", "0.6", "-m",
                         model, "--text-encoder", encoder, *flags, "-o", folder, "a cat")
            assert result.exit_code == 0, result.stderr
            runs.append(np.asarray(Image.open(next(folder.glob("*.png"))), dtype=np.int16))
        assert np.array_equal(*runs), command


def test_a_qwen25_vl_gguf_is_refused_by_the_edit_model_in_one_line(cli, flow_pipes, flow_files, tmp_path):
    """Qwen-Image-Edit reads its images with the vision tower, which a GGUF does not hold: one line naming the flag
    and the file, exit 2, nothing written."""
    written = flow_files["qwenimage"]["comfy"]
    edit = tmp_path / "qwen_image_edit_fp8_e4m3fn.safetensors"  # the name says Qwen-Image-Edit (families)
    shutil.copy(written["transformer"], edit)
    gguf = _qwen_gguf(flow_pipes["qwenimage"], tmp_path / "qwen2.5-vl-7b-Q8_0.gguf", "Q8_0")
    image = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (90, 120, 200)).save(image)
    result = cli("edit", "--steps", "2", "--seed", "3", "-m", edit, "--text-encoder", gguf, "--vae", written["vae"],
                 "-i", image, "-o", tmp_path / "o", "make it purple")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --text-encoder: {gguf}: a Qwen2.5-VL GGUF holds its language model "
                                    "only, and Qwen-Image-Edit reads its images with the vision tower"), result.stderr
    assert not (tmp_path / "o").exists()
