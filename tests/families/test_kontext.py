"""Flux.1 Kontext's and Qwen-Image-Edit's detection and the reference image sizes of the families that edit by
instruction."""

from __future__ import annotations

import json

import pytest


def _folder(tmp_path, pipeline: str, guidance: bool = True):
    (tmp_path / "transformer").mkdir(parents=True)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"in_channels": 64, "guidance_embeds": guidance}))
    return tmp_path


@pytest.mark.parametrize("pipeline,family", [("FluxKontextPipeline", "flux-kontext"), ("FluxPipeline", "flux-dev"),
                                             ("Flux2KleinPipeline", "flux2-klein-base"),
                                             ("QwenImageEditPipeline", "qwen-image-edit"),
                                             ("QwenImageEditPlusPipeline", "qwen-image-edit-plus"),
                                             ("QwenImagePipeline", "qwen-image")])
def test_a_kontext_folder_is_kontext_and_a_dev_folder_is_not(tmp_path, pipeline, family):
    from sdcli.families import detect_folder

    assert detect_folder(_folder(tmp_path, pipeline)).family.name == family


def test_kontext_files_are_read_as_dev():
    """A Kontext transformer file has dev's keys: nothing in it says Kontext, so it is dev (README: sdcli edit)."""
    from sdcli.families import detect_single_file

    shapes = {"img_in.weight": (3072, 64), "guidance_in.in_layer.weight": (3072, 256)}
    assert detect_single_file(shapes).family.name == "flux-dev"


def test_only_the_editing_families_take_reference_images():
    from sdcli.families import FAMILIES

    editors = {f.name: f.capabilities.references for f in FAMILIES.values() if f.capabilities.references}
    assert editors == {"flux-kontext": 4, "flux2-klein": 4, "flux2-klein-base": 4, "flux2-dev": 4, "qwen-image-edit": 1,
                       "qwen-image-edit-plus": 3}


@pytest.mark.parametrize("size", [(2048, 1024), (1024, 1024), (1500, 1000), (333, 777), (4000, 3000), (17, 40)])
def test_klein_reference_size_is_diffusers(size):
    """Flux2KleinPipeline: down to 1024^2 pixels when larger (its _resize_to_target_area), then cut to 16 px."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor
    from PIL import Image

    from sdcli.families.flux2 import FLUX2_KLEIN

    image = Image.new("RGB", size)
    if size[0] * size[1] > 1024 * 1024:
        image = Flux2ImageProcessor._resize_to_target_area(image, 1024 * 1024)
    width, height = image.size
    expected = (max(16, width // 16 * 16), max(16, height // 16 * 16))
    assert FLUX2_KLEIN.reference_size(size, 1024) == expected


@pytest.mark.parametrize("size", [(1024, 1024), (1920, 1080), (640, 480), (333, 777)])
def test_qwen_edit_reference_size_is_diffusers(size):
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    from sdcli.families.qwenimage import QWEN_IMAGE_EDIT

    assert QWEN_IMAGE_EDIT.reference_size(size, 1328) == calculate_dimensions(1024 * 1024, size[0] / size[1])[:2]


def test_edit_plus_sizes_an_edit_from_its_last_image():
    """QwenImageEditPlusPipeline's default size is the last image's; Edit's (and the others') the first's."""
    from sdcli.families.kontext import FLUX_KONTEXT
    from sdcli.families.qwenimage import QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS

    sizes = [(1024, 1024), (1184, 864)]
    assert QWEN_IMAGE_EDIT_PLUS.edit_size(sizes) == (1184, 864)
    assert QWEN_IMAGE_EDIT.edit_size(sizes) == FLUX_KONTEXT.edit_size(sizes) == (1024, 1024)


def test_qwen_image_files_stay_qwen_image():
    from sdcli.families import FAMILIES, detect_single_file

    shapes = {"txt_norm.weight": (4,), "transformer_blocks.0.img_mod.1.weight": (4, 4), "img_in.weight": (4, 64)}
    assert detect_single_file(shapes).family is FAMILIES["qwen-image"]


def test_a_tiny_kontext_takes_the_image_at_its_own_size_cut_to_tokens():
    from sdcli.families.kontext import FLUX_KONTEXT

    assert FLUX_KONTEXT.reference_size((50, 33), 64) == (48, 32)
    assert FLUX_KONTEXT.reference_size((1000, 1000), 1024) == (1024, 1024)
