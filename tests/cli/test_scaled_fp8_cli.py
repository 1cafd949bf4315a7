"""ComfyUI's scaled fp8 files (`*_fp8_scaled`, `*_fp8_mixed`) through `sdcli txt2img` for every flow family: each
tiny model's transformer and text encoder written in one of ComfyUI's scaled layouts (tests/cli/scaled_files.py)
give exactly the pixels of the same weights dequantized by hand, and within a few levels of the unquantized files;
the same fp8 values with their scales left out give other pixels (so the equality can fail); `sdcli models` names
the scaled files as it names the plain ones; a layer in a format sdcli cannot read is refused in one line."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.cli.flow_files import ROWS, RUN, pixels, writer
from tests.cli.scaled_files import scale_file


@dataclass(frozen=True)
class ScaledRow:
    """A family's scaled files: ComfyUI's layout of its transformer and of its text encoder (None: left as it is),
    the fp8 kind, and the most any pixel may move from the unquantized files' (measured, plus headroom)."""

    transformer: str
    encoder: str | None
    fp8: str = "float8_e4m3fn"
    bound: int = 8


SCALED = {
    "zimage": ScaledRow("old", "comfy_quant"),  # Z-Image fp8_scaled; qwen_3_4b_fp8_mixed
    "chroma": ScaledRow("comfy_quant", "old"),  # Chroma fp8_scaled; t5xxl_fp8_e4m3fn_scaled
    "qwenimage": ScaledRow("metadata", "old"),  # qwen_image_fp8 mixed; qwen_2.5_vl_7b_fp8_scaled
    "flux2": ScaledRow("comfy_quant", "metadata"),
    "flux2-dev": ScaledRow("comfy_quant", "comfy_quant", "float8_e5m2"),  # flux2_dev_fp8mixed; mistral_3_small_flux2
    "flux1": ScaledRow("old", "old"),  # flux1-dev-fp8-scaled; t5xxl_fp8_e4m3fn_scaled
    "sd3": ScaledRow("old", None),  # sd3.5_large_fp8_scaled: one checkpoint, its MMDiT and T5-XXL scaled
}


def _flux1_files(root: Path) -> dict[str, Path]:
    from sdcli.models.tiny_flux import write_tiny_flux_files

    files = write_tiny_flux_files(root / "flux1-dev.safetensors", "flux-dev", 0, "comfy", "F16")
    return {"transformer": files["transformer"], "t5xxl": files["text_encoder_2"], "clip_l": files["text_encoder"],
            "vae": files["vae"]}


@pytest.fixture(scope="session")
def scaled_files(tiny_family, tmp_path_factory):
    """key -> {"plain", "scaled", "by-hand", "ignored"} -> part -> file (sd3: "checkpoint")."""
    import diffusers

    from sdcli.models.tiny import build_tiny_single_file

    root = tmp_path_factory.mktemp("scaled")
    out: dict[str, dict[str, dict[str, Path]]] = {}
    for key, row in SCALED.items():
        if key == "flux1":
            plain, encoder = _flux1_files(root / key / "plain"), "t5xxl"
        elif key == "sd3":
            plain, encoder = {"checkpoint": build_tiny_single_file(root / key / "plain" / "sd3.5.safetensors",
                                                                   arch="sd3")}, None
        else:
            flow = ROWS[key]
            pipe = getattr(diffusers, flow.pipeline).from_pretrained(tiny_family(flow.arch), local_files_only=True)
            plain, encoder = writer(flow)(pipe, root / key / "plain", "comfy", "F32"), flow.encoder
        words = {"plain": plain, **{w: dict(plain) for w in ("scaled", "by-hand", "ignored")}}
        if key == "sd3":  # the MMDiT and T5-XXL of the checkpoint, as ComfyUI's fp8 SD3.5 file
            made = scale_file(plain["checkpoint"], root / key, row.transformer, row.fp8,
                              ("model.diffusion_model.", "text_encoders.t5xxl."))
            for word, path in made.items():
                words[word]["checkpoint"] = path
        else:
            for part, layout in (("transformer", row.transformer), (encoder, row.encoder)):
                if layout is not None:
                    for word, path in scale_file(plain[part], root / key / part, layout, row.fp8).items():
                        words[word][part] = path
        out[key] = words
    return out


def _args(files: dict[str, Path]) -> tuple:
    if "checkpoint" in files:
        return (files["checkpoint"],)
    parts = [a for part, path in files.items() if part not in ("transformer", "vae")
             for a in ("--text-encoder", path)]
    return (files["transformer"], *parts, "--vae", files["vae"])


@pytest.mark.parametrize("key", SCALED)
def test_scaled_files_give_the_pixels_of_their_weights_dequantized(cli, scaled_files, tmp_path, key):
    """Scaled == dequantized by hand, exactly. Against the unquantized files fp8's rounding moves a pixel by at most
    32 levels and the mean by at most 1.5 (measured: max 4-28, mean 0.48-0.93); the fp8 values read without their
    scales move the mean at least twice as far from the dequantized pixels (measured: 2.1-18)."""
    files = scaled_files[key]
    got = {word: pixels(cli, tmp_path / word, *_args(files[word]))
           for word in ("plain", "scaled", "by-hand", "ignored")}
    assert np.array_equal(got["scaled"], got["by-hand"])
    rounding = np.abs(got["scaled"] - got["plain"])
    assert rounding.max() <= 32 and rounding.mean() <= 1.5, (rounding.max(), rounding.mean())
    ignored = np.abs(got["ignored"] - got["by-hand"])
    assert ignored.mean() > 2 * rounding.mean(), (ignored.mean(), rounding.mean())


def test_sdcli_models_names_scaled_files_as_the_plain_ones(cli, scaled_files, tmp_path):
    """The scales and markers beside the weights change neither family nor kind; the stored dtype says "scaled"."""
    comfy = tmp_path / "ComfyUI" / "models"
    picks = {("zimage", "transformer"): "diffusion_models", ("zimage", "qwen3"): "text_encoders",
             ("qwenimage", "transformer"): "diffusion_models", ("flux2-dev", "transformer"): "diffusion_models",
             ("flux2-dev", "mistral3"): "text_encoders", ("flux1", "transformer"): "diffusion_models",
             ("chroma", "t5xxl"): "text_encoders", ("sd3", "checkpoint"): "checkpoints"}
    for (key, part), sub in picks.items():
        (comfy / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(scaled_files[key]["scaled"][part], comfy / sub)
    result = cli("models", "--comfy-dir", comfy.parent, "--json")
    assert result.exit_code == 0, result.stderr
    what = {r["name"]: (r["kind"], r["what"]) for r in map(json.loads, result.stdout.splitlines())}
    assert what == {
        "z_image_comfy": ("diffusion_model", "zimage transformer (comfy, fp8 scaled)"),
        "qwen_3_4b": ("text_encoder", "qwen3 text encoder (fp8 scaled)"),
        "qwen_image_comfy": ("diffusion_model", "qwen-image transformer (comfy, fp8 scaled)"),
        "flux2_dev_comfy": ("diffusion_model", "flux2-dev transformer (comfy, fp8 e5m2 scaled)"),
        "mistral_3_small_flux2_bf16": ("text_encoder", "mistral3 text encoder (fp8 e5m2 scaled)"),
        "flux1-dev": ("diffusion_model", "flux-dev transformer (comfy, fp8 scaled)"),
        "t5xxl": ("text_encoder", "t5xxl text encoder (fp8 scaled)"),
        "sd3.5": ("checkpoint", "sd3 checkpoint"),
    }


def _with(src: Path, dest: Path, extra: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import load_file, save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({**load_file(str(src)), **extra}, str(dest), metadata=metadata)
    return dest


def test_a_layer_in_a_format_sdcli_cannot_read_is_refused_in_one_line(cli, scaled_files, tmp_path):
    """An nvfp4 layer (its comfy_quant tensor) in the transformer, an mxfp8 layer (the file's metadata) in the text
    encoder: each refused naming the flag, the file, the layer and the format; nothing is written."""
    import torch

    from tests.cli.scaled_files import _conf

    files = scaled_files["zimage"]["scaled"]
    layer = "model.diffusion_model.layers.0.attention.out"
    transformer = _with(files["transformer"], tmp_path / "nvfp4" / files["transformer"].name,
                        {f"{layer}.comfy_quant": _conf("nvfp4"), f"{layer}.weight_scale_2": torch.tensor(1.0)})
    quant = json.dumps({"layers": {"model.layers.0.mlp.down_proj": {"format": "mxfp8"}}})
    encoder = _with(scaled_files["zimage"]["plain"]["qwen3"], tmp_path / "mxfp8" / "qwen_3_4b.safetensors", {},
                    {"_quantization_metadata": quant})
    cases = (
        ((transformer, "--text-encoder", files["qwen3"]),
         f"--model: {transformer}: {layer} is stored as 'nvfp4', a ComfyUI quantization sdcli cannot read (it reads "
         "float8_e4m3fn and float8_e5m2 with a scale per tensor)"),
        ((files["transformer"], "--text-encoder", encoder),
         f"--text-encoder: {encoder}: model.layers.0.mlp.down_proj is stored as 'mxfp8', a ComfyUI quantization"),
    )
    for (model, *args), message in cases:
        result = cli("txt2img", "-m", model, *RUN, "-o", tmp_path / "o", *args, "--vae", files["vae"], "a cat")
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith("error: " + message) and result.stderr.count("\n") == 1, result.stderr
        assert not (tmp_path / "o").exists()
