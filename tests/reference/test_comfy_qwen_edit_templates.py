"""ComfyUI's Qwen-Image-Edit templates (image_qwen_image_edit, image_qwen_image_edit_2509: TextEncodeQwenImageEdit
and ...Plus on both prompts with the VAE and the image, ModelSamplingAuraFlow 3, CFGNorm 1, KSampler on the image's
VAEEncode; 3 steps here, the template's LoRA left out) replayed by `sdcli replay IMG -i REF` on the tiny edit
models as `sdcli edit --comfy-edit`, against qwenimage_edit_comfy_ref (the nodes' area resizes, ComfyUI's vision
preprocessing, its reference placement). The tiny model's areas are the nodes' scaled by (64 / 1024)^2, as sdcli
scales diffusers' areas for it: 64 x 64 pixels for the reference latents, 24 x 24 for Edit Plus's vision input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.test_comfy_edit_templates import PROMPT, SEED, levels, qwen_edit_template, replay

pytestmark = [pytest.mark.parity]
STEPS = 3
AREA, VISION_AREA = 64 * 64, 24 * 24  # the nodes' 1024 x 1024 and 384 x 384 at the tiny model's 64 px


def template(plus=False, cfg=1.0, images=1):
    """The template's API graph without its LoRA, at STEPS; Edit Plus with `images` LoadImages."""
    graph = qwen_edit_template(plus)
    graph.pop("89")
    graph["66"]["inputs"]["model"] = ["37", 0]
    graph["3"]["inputs"].update(steps=STEPS, cfg=cfg)
    for extra in range(2, images + 1):
        graph[f"9{extra}"] = {"class_type": "LoadImage", "inputs": {"image": f"ref{extra}.png", "upload": "image"}}
        for encoder in ("76", "77"):
            graph[encoder]["inputs"][f"image{extra}"] = [f"9{extra}", 0]
    return graph


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """128 px blurred noise (the reference a 2x area-resize of it), a 64 px one, and a 96x64 one."""
    from PIL import Image, ImageFilter

    folder = tmp_path_factory.mktemp("qwen-edit-refs")
    rng = np.random.default_rng(7)
    for name, (w, h) in {"big": (128, 128), "other": (128, 128), "small": (64, 64), "wide": (96, 64)}.items():
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)).save(folder / f"{name}.png")
    return folder


def theirs(model, paths, plus=False, cfg=1.0, negative=""):
    from tests.reference import comfy_ref as C
    from tests.reference import qwenimage_edit_comfy_ref as QC
    from tests.reference import qwenimage_ref as Q

    return QC.sample(model.pipe, paths, PROMPT, negative, seed=SEED, steps=STEPS, cfg=cfg, plus=plus,
                     ms=C.DiscreteFlow(shift=3, multiplier=1.0), post_cfg=Q.cfg_norm(1), area=AREA,
                     vision_area=VISION_AREA)


def test_qwen_image_edit_template(tiny_family_pipe, images, tmp_path, single_thread):
    """TextEncodeQwenImageEdit's template replays at 0 levels. Each mapping matters: the same edit sized as
    diffusers' pipeline sizes it (sdcli edit without --comfy-edit: Lanczos to the area in multiples of 32, its
    processor's bicubic vision input) is off, and so is another image."""
    model = tiny_family_pipe("qwen-image-edit")
    big = images / "big.png"
    reference = theirs(model, [big])
    ours = replay(model, tmp_path, template(), [big])
    diffusers = replay(model, tmp_path, template(), [big], comfy_edit=False, width=128, height=128)
    other = replay(model, tmp_path, template(), [images / "other.png"])
    print(f"qwen-image-edit template: {levels(ours, reference)}; diffusers' sizing {levels(diffusers, reference)}, "
          f"another image {levels(other, reference)}")
    assert ours.shape == reference.shape == (128, 128, 3)
    assert levels(ours, reference) == 0
    assert levels(diffusers, reference) > 0 and levels(other, reference) > 0
