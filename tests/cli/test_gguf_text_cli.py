"""llama.cpp GGUFs of the flow families' big text encoders through the CLI: Mistral Small 3 (Flux.2 dev's; the
"llama" architecture of the 2025 files, "mistral3" of llama.cpp's converter since). The files are written as llama.cpp's
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

from tests.cli.flow_files import pixels
from tests.reference.llama_cpp_gguf import write_text_gguf


def _mistral_gguf(pipe, dest: Path, arch: str, qtype: str = "F32", interleave: bool = True) -> Path:
    """The tiny Flux.2 dev pipeline's Mistral Small 3 text model as llama.cpp's GGUF."""
    encoder = pipe.text_encoder
    return write_text_gguf(encoder.model.language_model, encoder.lm_head.weight, dest, arch, qtype,
                           interleave=interleave)


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
