"""The flow families' single files for the tests of tests/cli/test_flow_files_cli.py and test_flow_parts_cli.py:
each family's row (tiny arch, writer, pipeline class, text encoder part, the words of its refusals and of `sdcli
models`), its tiny pipeline and its files in every layout (session fixtures, built once), the folder's pixels, and
helpers to run txt2img and to cut the network off."""

from __future__ import annotations

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
    all_in_one: bool = True  # people share all-in-one checkpoints of it (Flux.2 dev ships as separate files)


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
                         vae="give the Flux.2 VAE (flux2-vae.safetensors)", all_in_one=False),
}
LAYOUTS = ("original", "comfy", "diffusers", "gguf")
AIO_ROWS = [key for key, row in ROWS.items() if row.all_in_one]
CASES = [(key, layout) for key, row in ROWS.items() for layout in row.layouts]


def writer(row: FileRow):
    import importlib

    module, name = row.writer.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="session")
def flow_pipes(tiny_family):
    """The tiny diffusers pipeline of each row (seed 0), loaded once."""
    import diffusers

    return {key: getattr(diffusers, row.pipeline).from_pretrained(tiny_family(row.arch), local_files_only=True)
            for key, row in ROWS.items()}


@pytest.fixture(scope="session")
def flow_files(flow_pipes, tmp_path_factory):
    """key -> layout -> part -> file (gguf: F32; "gguf-Q8_0"; "other": original layout, other weights)."""
    import torch

    root = tmp_path_factory.mktemp("flow-files")
    out: dict[str, dict[str, dict[str, Path]]] = {}
    for key, row in ROWS.items():
        write, pipe = writer(row), flow_pipes[key]
        out[key] = {layout: write(pipe, root / key / layout, layout, "F32") for layout in row.layouts}
        out[key]["gguf-Q8_0"] = write(pipe, root / key / "q8", "gguf", "Q8_0")
        other = {k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
                 for k, v in pipe.transformer.state_dict().items()}
        changed = type(pipe.transformer).from_config(pipe.transformer.config)
        changed.load_state_dict(other)
        out[key]["other"] = write(SimpleNamespace(transformer=changed, text_encoder=pipe.text_encoder, vae=pipe.vae),
                                  root / key / "other", "original", "F32")
    return out


@pytest.fixture(scope="session")
def flow_pixels(tiny_family, tmp_path_factory):
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


def pixels(cli, out: Path, model, *args) -> np.ndarray:
    result = cli("txt2img", "-m", model, *RUN, "-o", out, *args, "a cat")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


def part_flags(written: dict[str, Path]) -> tuple[str, ...]:
    encoder = next(path for part, path in written.items() if part not in ("transformer", "vae"))
    return ("--text-encoder", str(encoder), "--vae", str(written["vae"]))


def offline(tmp_path: Path, monkeypatch) -> None:
    """Every socket connection fails and the Hugging Face caches are empty (as the Flux offline test)."""
    import huggingface_hub.constants

    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(name, str(hf))
        monkeypatch.setattr(huggingface_hub.constants, name, str(hf))

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
