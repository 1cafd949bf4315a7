"""A diffusers folder as published whose model_index.json names a transformers processor that cannot be made
here: Flux.2 dev's `tokenizer` is a PixtralProcessor, which transformers 5 builds only with torchvision (not a
dependency of sdcli). The folder loads with the processor's text tokenizer in its place and gives the same
pixels and rewritten prompt as sdcli's own tiny layout."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("single_thread")

PREPROCESSOR = {"image_processor_type": "PixtralImageProcessorFast", "processor_class": "PixtralProcessor",
                "patch_size": 14, "size": {"longest_edge": 1540}, "do_resize": True, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True, "resample": 3}
PROCESSOR = {"processor_class": "PixtralProcessor", "patch_size": 14, "spatial_merge_size": 2,
             "image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}


@pytest.fixture
def published(tiny_family, tmp_path):
    """The tiny Flux.2 dev folder with Black Forest Labs' layout of its tokenizer (a PixtralProcessor)."""
    folder = shutil.copytree(tiny_family("flux2-dev"), tmp_path / "published")
    index = json.loads((folder / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PixtralProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "tokenizer" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    (folder / "tokenizer" / "processor_config.json").write_text(json.dumps(PROCESSOR))
    return folder


def _made(cli, model, out, *args):
    result = cli(*args, "-m", model, "--steps", "2", "--seed", "3", "-o", out)
    assert result.exit_code == 0, result.stderr
    path = next(out.glob("*.png"))
    params = Image.open(path).info["parameters"]  # without the model's name and hash (the folders differ)
    return np.asarray(Image.open(path)), re.sub(r"Model( hash)?: [^,]*, ", "", params)


def test_a_published_flux2_dev_folder_loads_without_torchvision(cli, tiny_family, published, tmp_path):
    own = _made(cli, tiny_family("flux2-dev"), tmp_path / "own", "txt2img", "a cat", "-W", "32", "-H", "32")
    theirs = _made(cli, published, tmp_path / "theirs", "txt2img", "a cat", "-W", "32", "-H", "32")
    assert np.array_equal(own[0], theirs[0]) and own[1] == theirs[1] and "Model" not in own[1]


@pytest.mark.slow
def test_its_edit_caption_upsampling_sees_the_images_as_before(cli, tiny_family, published, tmp_path):
    Image.new("RGB", (96, 64), (200, 50, 40)).save(tmp_path / "in.png")
    edit = ("edit", "make it blue", "-i", tmp_path / "in.png", "--upsample-prompt", "0.15")
    own = _made(cli, tiny_family("flux2-dev"), tmp_path / "own", *edit)
    theirs = _made(cli, published, tmp_path / "theirs", *edit)
    assert "Upsampled prompt:" in own[1]
    assert np.array_equal(own[0], theirs[0]) and own[1] == theirs[1]
