"""`sdcli edit` from single files of the families whose files have another family's tensors key for key: Flux.1
Kontext (Flux.1 dev's) and Qwen-Image-Edit / Edit Plus (Qwen-Image's). The file's name says which model it is
(families.NAMED_VARIANTS: "kontext", "qwen_image_edit", "qwen_image_edit_2509"), as people name them; the edit
then equals the diffusers folder's pixels exactly. The same file under another name is the tensors' family, and
`sdcli edit` refuses it in one line saying how the name tells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

RUN = ("--steps", "2", "--seed", "3")
# arch -> (the file name people have, the same file under the tensors' family's name)
NAMES = {"flux-kontext": ("flux1-kontext-dev.safetensors", "flux1-dev.safetensors"),
         "qwen-image-edit": ("qwen_image_edit_fp8_e4m3fn.safetensors", "qwen_image_fp8_e4m3fn.safetensors"),
         "qwen-image-edit-plus": ("Qwen-Image-Edit-2509.safetensors", None)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "photo.png"
    Image.radial_gradient("L").convert("RGB").resize((32, 32)).save(path)
    return path


def _write(arch: str, folder: Path, out: Path) -> dict[str, Path]:
    """The tiny `arch` folder's weights as separate files: the transformer (ComfyUI's layout) named as NAMES says,
    its text encoder(s) and VAE beside it."""
    if arch == "flux-kontext":
        from sdcli.models.tiny_flux import write_tiny_flux_files

        files = write_tiny_flux_files(out / NAMES[arch][0], arch, 0, "comfy")
        return {"transformer": files["transformer"], "clip_l": out / "clip_l.safetensors",
                "t5xxl": out / "t5xxl.safetensors", "vae": out / "ae.safetensors"}
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from sdcli.models.qwenimage_files import write_qwenimage_files

    parts = SimpleNamespace(transformer=QwenImageTransformer2DModel.from_pretrained(folder / "transformer"),
                            text_encoder=Qwen2_5_VLForConditionalGeneration.from_pretrained(folder / "text_encoder"),
                            vae=AutoencoderKLQwenImage.from_pretrained(folder / "vae"))
    files = write_qwenimage_files(parts, out, "comfy")
    files["transformer"] = files["transformer"].rename(out / NAMES[arch][0])
    return files


def _args(files: dict[str, Path], model: Path) -> tuple[str, ...]:
    encoders = [a for part, path in files.items() if part not in ("transformer", "vae")
                for a in ("--text-encoder", str(path))]
    return ("-m", str(model), *encoders, "--vae", str(files["vae"]))


def _edit(cli, out: Path, reference: Path, *args) -> np.ndarray:
    result = cli("edit", *RUN, "-o", out, *args, "-i", reference, "make the sky purple")
    assert result.exit_code == 0, result.stderr
    (png,) = out.glob("*.png")
    return np.asarray(Image.open(png), dtype=np.int16)


@pytest.mark.parametrize("arch", NAMES)
def test_an_edit_model_file_named_as_people_name_it_edits_as_its_folder(cli, tiny_family, reference, tmp_path, arch):
    folder = tiny_family(arch)
    files = _write(arch, folder, tmp_path / "files")
    want = _edit(cli, tmp_path / "a", reference, "-m", folder)
    assert np.array_equal(_edit(cli, tmp_path / "b", reference, *_args(files, files["transformer"])), want)
    result = cli("models", "--comfy-dir", _comfy(tmp_path, files["transformer"]), "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = map(json.loads, result.stdout.splitlines())
    assert record["what"] == f"{arch} transformer (comfy, fp32)"


@pytest.mark.parametrize("arch", [a for a, (_, other) in NAMES.items() if other])
def test_the_same_file_under_its_tensors_name_is_refused_by_edit_in_one_line(cli, tiny_family, reference, tmp_path,
                                                                             arch):
    files = _write(arch, tiny_family(arch), tmp_path / "files")
    renamed = files["transformer"].with_name(NAMES[arch][1])
    shutil.copy(files["transformer"], renamed)
    result = cli("edit", *RUN, "-o", tmp_path / "o", *_args(files, renamed), "-i", reference, "make the sky purple")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    label, hint = ("Flux.1 dev", "Flux.1 Kontext: 'kontext'") if arch == "flux-kontext" else (
        "Qwen-Image", "Qwen-Image-Edit Plus: 'image_edit_2509', Qwen-Image-Edit: 'image_edit'")
    assert result.stderr.startswith(f"error: sdcli edit: a {label} model cannot edit by instruction;"), result.stderr
    assert f"(a single file's name says which model it is: {hint} in it)" in result.stderr
    assert not (tmp_path / "o").exists()


def _comfy(tmp_path: Path, model: Path) -> Path:
    folder = tmp_path / "ComfyUI" / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    shutil.copy(model, folder / model.name)
    return tmp_path / "ComfyUI"


def test_a_qwen_image_edit_all_in_one_checkpoint_edits_as_its_folder(cli, tiny_family, reference, tmp_path):
    """An all-in-one Qwen-Image-Edit checkpoint named as people name them (Phr00t's Qwen-Image-Edit-Rapid-AIO: the
    transformer, Qwen2.5-VL and the VAE in ComfyUI's checkpoint layout) edits as the folder."""
    from sdcli.models.flow_write import write_all_in_one

    folder = tiny_family("qwen-image-edit")
    files = _write("qwen-image-edit", folder, tmp_path / "files")
    aio = write_all_in_one(files, tmp_path / "Qwen-Image-Edit-Rapid-AIO.safetensors")
    want = _edit(cli, tmp_path / "a", reference, "-m", folder)
    assert np.array_equal(_edit(cli, tmp_path / "b", reference, "-m", aio), want)
