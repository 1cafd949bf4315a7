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
    """128 px blurred noise (the reference a 2x area-resize of it), another, a 64 px one, a 96x64 one (its reference
    72x48: odd token grids) and a 48 px one (its reference 64 px: larger than the image)."""
    from PIL import Image, ImageFilter

    folder = tmp_path_factory.mktemp("qwen-edit-refs")
    rng = np.random.default_rng(7)
    for name, (w, h) in {"big": (128, 128), "other": (128, 128), "small": (64, 64), "wide": (96, 64),
                          "tiny": (48, 48)}.items():
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)).save(folder / f"{name}.png")
    return folder


def theirs(model, paths, plus=False, cfg=1.0, negative="", size=None, comfy_positions=True):
    from tests.reference import comfy_ref as C
    from tests.reference import qwenimage_edit_comfy_ref as QC
    from tests.reference import qwenimage_ref as Q

    return QC.sample(model.pipe, paths, PROMPT, negative, seed=SEED, steps=STEPS, cfg=cfg, plus=plus,
                     ms=C.DiscreteFlow(shift=3, multiplier=1.0), post_cfg=Q.cfg_norm(1), area=AREA,
                     vision_area=VISION_AREA, size=size, comfy_positions=comfy_positions)


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


@pytest.mark.parametrize("name", ["wide", "tiny"])
def test_qwen_image_edit_template_at_comfyuis_positions(tiny_family_pipe, images, tmp_path, name, single_thread):
    """Sizes where diffusers' rotary positions are not ComfyUI's replay at 0 levels: odd token grids (a 96x64
    image, its reference 72x48: diffusers centres an odd side half a token the other way) and a reference larger
    than the image (48 px, its reference 64 px: diffusers starts the text after the reference's grid). The
    transcription with diffusers' positions is off."""
    model = tiny_family_pipe("qwen-image-edit")
    path = images / f"{name}.png"
    reference = theirs(model, [path])
    ours = replay(model, tmp_path, template(), [path])
    diffusers = theirs(model, [path], comfy_positions=False)
    print(f"{name}: {levels(ours, reference)}; diffusers' positions {levels(diffusers, reference)}")
    assert ours.shape == reference.shape
    assert levels(ours, reference) == 0 and levels(diffusers, reference) > 0


def test_qwen_image_edit_plus_template(tiny_family_pipe, images, tmp_path, single_thread):
    """TextEncodeQwenImageEditPlus's template with two images replays at 0 levels: "Picture 1" and "Picture 2"
    seen at the vision area, each encoded at the reference area in multiples of 8, in the node's order (the other
    order, at the same size, is off), the edit at the first image's size."""
    model = tiny_family_pipe("qwen-image-edit-plus")
    big, small = images / "big.png", images / "small.png"
    reference = theirs(model, [big, small], plus=True)
    ours = replay(model, tmp_path, template(plus=True, images=2), [big, small])
    swapped = theirs(model, [small, big], plus=True, size=(128, 128))
    print(f"qwen-image-edit-plus template: {levels(ours, reference)}; the images swapped {levels(ours, swapped)}")
    assert ours.shape == reference.shape == (128, 128, 3)
    assert levels(ours, reference) == 0 and levels(ours, swapped) > 0


def test_qwen_image_edit_template_at_true_cfg(tiny_family_pipe, images, tmp_path, single_thread):
    """The template's other setting, CFG 2.5 (the empty negative prompt encoded with the image, CFGNorm 1):
    0 levels; the same graph at CFG 1 is off."""
    model = tiny_family_pipe("qwen-image-edit")
    big = images / "big.png"
    reference = theirs(model, [big], cfg=2.5)
    ours = replay(model, tmp_path, template(cfg=2.5), [big])
    print(f"qwen-image-edit template at CFG 2.5: {levels(ours, reference)}")
    assert levels(ours, reference) == 0
    at_one = replay(model, tmp_path, template(), [big])
    assert levels(at_one, reference) > 0


@pytest.mark.parametrize("plus", [False, True], ids=["edit", "edit-plus"])
@pytest.mark.parametrize("size", [(128, 128), (96, 64), (333, 517), (40, 200)])
def test_comfy_edit_inputs_are_the_nodes(size, plus):
    """Family.comfy_edit_inputs gives the nodes' float pixels exactly (the transcription's scale_area and the VAE
    crop), at the tiny model's areas and at the released model's (1024 x 1024, 384 x 384); and
    sdcli's vision preprocessing is ComfyUI's (process_qwen2vl_images) on what the text encoder sees."""
    import torch
    from PIL import Image, ImageFilter

    from sdcli.conditioning.qwenimage_edit import comfy_vision_inputs
    from sdcli.families.qwenimage import QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS
    from tests.reference import qwenimage_edit_comfy_ref as QC

    family = QWEN_IMAGE_EDIT_PLUS if plus else QWEN_IMAGE_EDIT
    noise = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))
    comfy_image = torch.from_numpy(np.asarray(image).astype(np.float32) / 255.0)[None]
    for native, area, vision_area in ((64, AREA, VISION_AREA), (1328, 1024 * 1024, 384 * 384)):
        seen, encoded = QC.edit_node_images([comfy_image], plus, area, vision_area)
        h, w = encoded[0].shape[1] // 8 * 8, encoded[0].shape[2] // 8 * 8
        top, left = (encoded[0].shape[1] % 8) // 2, (encoded[0].shape[2] % 8) // 2
        cropped = encoded[0][:, top:top + h, left:left + w].movedim(-1, 1)
        ours = family.comfy_edit_inputs([image], native)
        assert torch.equal(ours.references[0], cropped)
        assert torch.equal(ours.seen[0], seen[0].movedim(-1, 1))
        assert ours.size == (size[0] // 8 * 8, size[1] // 8 * 8)
        pixel_values, grid = comfy_vision_inputs(list(ours.seen))
        theirs_values, theirs_grid = QC.process_vision(seen[0])
        assert torch.equal(grid, theirs_grid) and torch.allclose(pixel_values, theirs_values, atol=1e-6)


def test_vision_input_is_comfyuis_not_the_processors():
    """sdcli's ComfyUI vision preprocessing equals transformers' Qwen2-VL processor where no resize is needed
    (a 56x84 image: the same patches and grid), and differs from it where one is (ComfyUI's bilinear resize of the
    float pixels, the processor's bicubic one of 8-bit pixels)."""
    import torch
    from PIL import Image

    from sdcli.conditioning.qwenimage_edit import comfy_vision_inputs, image_processor

    rng = np.random.default_rng(3)
    for shape, same in (((56, 84, 3), True), ((50, 90, 3), False)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = comfy_vision_inputs([torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]])
        theirs = image_processor()(images=[Image.fromarray(pixels)], return_tensors="pt")
        assert torch.equal(ours[1], theirs["image_grid_thw"])
        difference = float((ours[0] - theirs["pixel_values"]).abs().max())
        print(f"{shape}: {difference}")
        assert (difference < 1e-5) == same


def _scaled_input(graph):
    graph["93"] = {"class_type": "ImageScaleToTotalPixels", "inputs": {"upscale_method": "lanczos", "megapixels": 1,
                                                                        "resolution_steps": 1, "image": ["78", 0]}}
    for encoder in ("76", "77"):
        graph[encoder]["inputs"]["image"] = ["93", 0]


def _chained_reference(graph):
    graph["94"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["76", 0], "latent": ["88", 0]}}
    graph["3"]["inputs"]["positive"] = ["94", 0]


def _other_negative_image(graph):
    graph["95"] = {"class_type": "LoadImage", "inputs": {"image": "other.png", "upload": "image"}}
    graph["77"]["inputs"]["image"] = ["95", 0]
    graph["3"]["inputs"]["cfg"] = 2.5


def _plus_without_images(graph):
    for encoder in ("76", "77"):
        graph[encoder]["class_type"] = "TextEncodeQwenImageEditPlus"
        graph[encoder]["inputs"].pop("image")


@pytest.mark.parametrize("change,message", [
    (lambda g: g["76"]["inputs"].pop("vae"), "a TextEncodeQwenImageEdit without a VAE"),
    (_plus_without_images, "a TextEncodeQwenImageEditPlus without images"),
    (_scaled_input, "a TextEncodeQwenImageEdit image sized by ImageScaleToTotalPixels"),
    (lambda g: g["3"]["inputs"].update(denoise=0.8), "denoise 0.8"),
    (_chained_reference, "a ReferenceLatent with a Qwen-Image-Edit text encoder node's references"),
    (_other_negative_image, "the negative conditioning's reference images (other.png) at CFG 2.5"),
], ids=["no-vae", "plus-without-images", "scaled-image", "denoise", "reference-latent", "negative-image"])
def test_qwen_template_variants_refused_by_name(tmp_path, change, message):
    """What sdcli's edit cannot do as the graph did stops the replay before any model loads, in one line naming
    it (exit 2)."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = template()
    change(graph)
    with pytest.raises(UsageError, match="cannot replay") as caught:
        plan_replay(comfy_png(tmp_path / "t.png", graph), {}, model_override="m", input_images=[tmp_path / "x.png"])
    assert message in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_qwen_template_through_the_cli(tiny_family, tiny_family_pipe, images, tmp_path, single_thread):
    """`sdcli replay IMG -i REF -m MODEL` writes the edit in the transcription's pixels, its infotext saying
    `Comfy edit: True` (which sdcli's own replay of it reads back); --comfy-edit on a Flux.1 Kontext edit and on
    a txt2img (not its flag) are exit 2 naming the flag, nothing written; a txt2img request with it (a prompt
    file's line) is refused naming it."""
    from PIL import Image
    from typer.testing import CliRunner

    from sdcli.cli import app
    from tests.io.tool_images import comfy_png

    big, model = images / "big.png", tiny_family("qwen-image-edit")
    result = CliRunner().invoke(app, ["replay", str(comfy_png(tmp_path / "t.png", template())), "-i", str(big),
                                      "-m", str(model), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 1
    with Image.open(written[0]) as im:
        assert "Comfy edit: True" in im.info["parameters"]
        assert levels(np.asarray(im.convert("RGB")), theirs(tiny_family_pipe("qwen-image-edit"), [big])) == 0
    from sdcli.io.replay import plan_replay

    assert plan_replay(written[0], {}, model_override="m").request.comfy_edit is True
    kontext = CliRunner().invoke(app, ["edit", "make it red", "-i", str(big), "--comfy-edit", "-m",
                                       str(tiny_family("flux-kontext")), "-o", str(tmp_path / "kontext")])
    assert kontext.exit_code == 2 and "--comfy-edit: sdcli sizes no Flux.1 Kontext edit" in kontext.output
    txt2img = CliRunner().invoke(app, ["txt2img", "a cat", "--comfy-edit", "-m", str(model), "-o",
                                       str(tmp_path / "txt2img")])
    assert txt2img.exit_code == 2 and "--comfy-edit" in txt2img.output  # no such option: an edit's flag
    assert not (tmp_path / "kontext").exists() and not (tmp_path / "txt2img").exists()
    from sdcli.errors import UsageError
    from sdcli.request.generation import GenerationRequest, validate

    for fields in ({"comfy_edit": True}, {"reference_scale": "area 1 16"}):  # a prompt file's line, say
        flag = "--comfy-edit" if "comfy_edit" in fields else "--reference-scale"
        with pytest.raises(UsageError, match=f"^{flag}: it sizes an edit's reference images; it is for sdcli edit"):
            validate(GenerationRequest(prompt="a cat", **fields))
