"""ComfyUI's Flux.2 klein edit template (image_flux2_klein_image_edit_4b_distilled: LoadImage ->
ImageScaleToTotalPixels -> VAEEncode -> ReferenceLatent on both conditionings, GetImageSize sizing
EmptyFlux2LatentImage and Flux2Scheduler, SamplerCustomAdvanced euler at CFG 1) replayed by `sdcli replay IMG -i REF`
on the tiny klein as `sdcli edit --reference-scale 'METHOD MP STEPS'`, against flux2_edit_comfy_ref. The tiny model's
pixel count is the node's scaled by (its native side / 1024)^2, as sdcli scales diffusers' areas for it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.test_comfy_edit_templates import PROMPT, SEED, klein_edit_template, levels, replay

pytestmark = [pytest.mark.parity]


def template(method="nearest-exact", megapixels=1, steps=1, second=False):
    graph = klein_edit_template()
    graph["80"]["inputs"].update(upscale_method=method, megapixels=megapixels, resolution_steps=steps)
    if second:  # the template's second reference: its own ImageScaleToTotalPixels and VAEEncode, chained after
        graph["85"] = {"class_type": "LoadImage", "inputs": {"image": "second.png", "upload": "image"}}
        graph["86"] = {"class_type": "ImageScaleToTotalPixels", "inputs": {
            "upscale_method": method, "megapixels": megapixels, "resolution_steps": steps, "image": ["85", 0]}}
        graph["87"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["86", 0], "vae": ["72", 0]}}
        graph["88"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["77", 0], "latent": ["87", 0]}}
        graph["89"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["78", 0], "latent": ["87", 0]}}
        graph["63"]["inputs"].update(positive=["88", 0], negative=["89", 0])
    return graph


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image, ImageFilter

    folder = tmp_path_factory.mktemp("flux2-edit-refs")
    rng = np.random.default_rng(11)
    for name, (w, h) in {"big": (128, 128), "other": (128, 128), "wide": (96, 64), "small": (48, 32)}.items():
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def klein(tiny_family_pipe):
    return tiny_family_pipe("flux2-klein")


def unscaled(model, tmp_path, graph, inputs, **fields):
    """The replayed request without its --reference-scale (diffusers' sizing), `fields` set: the image."""
    from dataclasses import replace

    from sdcli.io.replay import plan_replay
    from sdcli.job.generate import run
    from sdcli.request.generation import validate
    from tests.io.tool_images import comfy_png

    request = plan_replay(comfy_png(tmp_path / "u.png", graph), {}, model_override="m", input_images=inputs).request
    request = replace(request, reference_scale=None, **fields)
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h")][0]


def theirs(model, paths, method="nearest-exact", megapixels=1, steps=1, **settings):
    from tests.reference import flux2_edit_comfy_ref as FC

    return FC.sample(model.pipe, paths, PROMPT, method, megapixels, steps, (model.native_size / 1024) ** 2,
                     seed=SEED, steps=4, **settings)


def test_flux2_klein_edit_template(klein, images, tmp_path, single_thread):
    """The template (nearest-exact to 1 MP, steps 1) replays at 0 levels at the scaled size; the same edit sized as
    diffusers' pipeline sizes it (no --reference-scale: Lanczos to at most the native area) and another image are
    off."""
    big = images / "big.png"
    reference = theirs(klein, [big])
    ours = replay(klein, tmp_path, template(), [big])
    side = reference.shape[0]
    diffusers = unscaled(klein, tmp_path, template(), [big], width=side, height=side)
    other = replay(klein, tmp_path, template(), [images / "other.png"])
    print(f"klein edit template: {levels(ours, reference)} at {ours.shape}; diffusers' sizing "
          f"{levels(diffusers, reference)}, another image {levels(other, reference)}")
    assert ours.shape == reference.shape
    assert levels(ours, reference) == 0
    assert levels(diffusers, reference) > 0 and levels(other, reference) > 0


@pytest.mark.parametrize("method", ["lanczos", "bilinear", "area", "bicubic"])
def test_flux2_klein_edit_template_methods(klein, images, tmp_path, method, single_thread):
    """Each upscale method of the node, two references (a 96x64 and a 48x32 image, steps 16: whole latent cells)
    chained as the template's second image: 0 levels; nearest-exact in the method's place is off."""
    paths = [images / "wide.png", images / "small.png"]
    reference = theirs(klein, paths, method, steps=16)
    ours = replay(klein, tmp_path, template(method, steps=16, second=True), paths)
    nearest = replay(klein, tmp_path, template("nearest-exact", steps=16, second=True), paths)
    print(f"{method}: {levels(ours, reference)} at {ours.shape}; nearest-exact {levels(nearest, reference)}")
    assert ours.shape == reference.shape
    assert levels(ours, reference) == 0 and levels(nearest, reference) > 0


@pytest.mark.parametrize("method", ["nearest-exact", "bicubic"])
def test_flux2_klein_edit_template_off_whole_cells(klein, images, tmp_path, method, single_thread):
    """Scaled sides that are not whole 16 px cells (a 96x64 and a 48x32 image at steps 1: both 78x52): each
    VAEEncode cuts its image to whole cells about the centre (64x48), the empty latent is the first one's whole
    cells and Flux2Scheduler sizes its schedule by its exact 78x52 pixels (16 tokens, not the latent's 12): 0 levels;
    the transcription with the schedule at the whole cells' 64x48 is off."""
    paths = [images / "wide.png", images / "small.png"]
    reference = theirs(klein, paths, method)
    cells = theirs(klein, paths, method, size=(64, 48))
    ours = replay(klein, tmp_path, template(method, second=True), paths)
    print(f"{method} at 78x52: {levels(ours, reference)} at {ours.shape}; the schedule at whole cells "
          f"{levels(cells, reference)}")
    assert ours.shape == reference.shape == (48, 64, 3)
    assert levels(ours, reference) == 0 and levels(cells, reference) > 0


def dev_template(guidance=4, size=(64, 48)):
    """Flux.2 dev's template (image_flux2) with its two ReferenceLatent nodes enabled (the template bypasses them):
    LoadImage -> ImageScaleToTotalPixels (area, 1 MP; its resolution_steps not yet a widget: 1) -> VAEEncode ->
    ReferenceLatent, chained after FluxGuidance on the one prompt (Mistral's CLIPLoader type flux2), BasicGuider
    (no negative, CFG 1), EmptyFlux2LatentImage and Flux2Scheduler at their own size (the template's width and height
    primitives, not GetImageSize), RandomNoise, KSamplerSelect euler, SamplerCustomAdvanced."""
    width, height = size
    scale = {"upscale_method": "area", "megapixels": 1}
    return {
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux2_dev_fp8mixed.safetensors",
                                                       "weight_dtype": "default"}},
        "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": "mistral_3_small_flux2_bf16.safetensors",
                                                      "type": "flux2", "device": "default"}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "flux2-vae.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["38", 0]}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": guidance, "conditioning": ["6", 0]}},
        "42": {"class_type": "LoadImage", "inputs": {"image": "wide.png"}},
        "41": {"class_type": "ImageScaleToTotalPixels", "inputs": {**scale, "image": ["42", 0]}},
        "40": {"class_type": "VAEEncode", "inputs": {"pixels": ["41", 0], "vae": ["10", 0]}},
        "39": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["26", 0], "latent": ["40", 0]}},
        "46": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "45": {"class_type": "ImageScaleToTotalPixels", "inputs": {**scale, "image": ["46", 0]}},
        "44": {"class_type": "VAEEncode", "inputs": {"pixels": ["45", 0], "vae": ["10", 0]}},
        "43": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["39", 0], "latent": ["44", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["43", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "47": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "48": {"class_type": "Flux2Scheduler", "inputs": {"steps": 4, "width": width, "height": height}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                 "sampler": ["16", 0], "sigmas": ["48", 0],
                                                                 "latent_image": ["47", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def test_flux2_dev_edit_template(tiny_family_pipe, images, tmp_path, single_thread):
    """Flux.2 dev's template replays on the tiny dev as `sdcli edit --reference-scale 'area 1 1'` at the latent's
    own 64x48 with its two references (a 96x64 and a 48x32 image, both scaled to 78x52 and cut to 64x48 by the
    VAE), ComfyUI's Mistral text path and FluxGuidance 4: 0 levels against flux2_edit_comfy_ref run with dev's
    encoder and guidance; the reference at guidance 3.5 (no FluxGuidance), or without its second image, is off."""
    from tests.reference import comfy_flow_text_ref as R

    dev = tiny_family_pipe("flux2-dev")
    paths = [images / "wide.png", images / "small.png"]
    settings = {"size": (64, 48), "encoder": R.flux2_dev_encode}
    reference = theirs(dev, paths, "area", guidance=4.0, **settings)
    at_35 = theirs(dev, paths, "area", guidance=3.5, **settings)
    one = theirs(dev, paths[:1], "area", guidance=4.0, **settings)
    ours = replay(dev, tmp_path, dev_template(), paths)
    print(f"flux2-dev edit template: {levels(ours, reference)} at {ours.shape}; guidance 3.5 "
          f"{levels(at_35, reference)}, one reference {levels(one, reference)}")
    assert ours.shape == reference.shape == (48, 64, 3)
    assert levels(ours, reference) == 0 and levels(at_35, reference) > 0 and levels(one, reference) > 0


def _other_size(graph):
    graph["90"] = {"class_type": "LoadImage", "inputs": {"image": "other.png", "upload": "image"}}
    graph["91"] = {"class_type": "GetImageSize", "inputs": {"image": ["90", 0]}}
    graph["66"]["inputs"].update(width=["91", 0], height=["91", 1])


def _own_size(graph):
    graph["79"]["inputs"]["pixels"] = ["76", 0]
    graph["81"]["inputs"]["image"] = ["76", 0]


@pytest.mark.parametrize("change,message", [
    (_other_size, "an empty latent sized by GetImageSize of another image"),
    (_own_size, "a reference image 'ref.png' encoded at its own size"),
    (lambda g: g["86"]["inputs"].update(megapixels=2), "references scaled by ImageScaleToTotalPixels nodes of "
                                                        "different settings (nearest-exact 1 1, nearest-exact 2 1)"),
    (lambda g: g["86"].update(class_type="FluxKontextImageScale"), "references sized by both FluxKontextImageScale "
                                                                    "and ImageScaleToTotalPixels"),
    (lambda g: g["62"]["inputs"].update(width=1024, height=1024), "a Flux2Scheduler sized otherwise than its empty "
                                                                  "latent"),
], ids=["latent-size", "own-size", "two-settings", "two-scalers", "schedule-size"])
def test_flux2_template_variants_refused_by_name(tmp_path, change, message):
    """What sdcli's edit cannot do as the graph did stops the replay before any model loads, in one line naming
    it (exit 2)."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = template(second=True)
    change(graph)
    with pytest.raises(UsageError, match="cannot replay") as caught:
        plan_replay(comfy_png(tmp_path / "t.png", graph), {}, model_override="m",
                    input_images=[tmp_path / "x.png", tmp_path / "y.png"])
    assert message in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_flux2_template_through_the_cli(tiny_family, klein, images, tmp_path, single_thread):
    """`sdcli replay IMG -i REF -m MODEL` writes the edit in the transcription's pixels, `Reference scale:
    nearest-exact 1 1` in its infotext (sdcli's own replay reads it back); a scale to sides that are not whole
    16 px cells (a 96x64 image at steps 1: 78x52) writes the transcription's 64x48 image too; a bad
    --reference-scale is exit 2 before loading."""
    from PIL import Image
    from typer.testing import CliRunner

    from sdcli.cli import app
    from tests.io.tool_images import comfy_png

    big, model = images / "big.png", tiny_family("flux2-klein")
    graph = comfy_png(tmp_path / "t.png", template())
    result = CliRunner().invoke(app, ["replay", str(graph), "-i", str(big), "-m", str(model), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 1
    with Image.open(written[0]) as im:
        assert "Reference scale: nearest-exact 1 1" in im.info["parameters"]
        assert levels(np.asarray(im.convert("RGB")), theirs(klein, [big])) == 0
    from sdcli.io.replay import plan_replay

    again = plan_replay(written[0], {}, model_override="m").request
    assert again.reference_scale == "nearest-exact 1 1" and again.mode == "edit"
    wide = CliRunner().invoke(app, ["replay", str(graph), "-i", str(images / "wide.png"), "-m", str(model), "-o",
                                    str(tmp_path / "wide")])
    assert wide.exit_code == 0, wide.output
    written = sorted((tmp_path / "wide").glob("*.png"))
    assert len(written) == 1
    with Image.open(written[0]) as im:
        assert im.size == (64, 48) and levels(np.asarray(im.convert("RGB")), theirs(klein, [images / "wide.png"])) == 0
    bad = CliRunner().invoke(app, ["edit", "a cat", "-i", str(big), "--reference-scale", "nearest 1 1", "-m",
                                   str(model), "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--reference-scale: 'nearest 1 1': METHOD one of nearest-exact" in bad.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
@pytest.mark.parametrize("size,steps", [((1000, 700), 16), ((777, 1333), 32), ((640, 480), 16), ((1000, 700), 1)])
def test_reference_scale_is_the_nodes(method, size, steps):
    """Flux.2's comfy_edit_inputs gives ImageScaleToTotalPixels' float pixels exactly (the transcription's) at the
    released model's 1 MP, cut to whole 16 px cells as VAE.encode cuts them (1000x700 at steps 1: 1224x857 ->
    1216x848), the edit its whole cells, and the schedule the tokens of the exact pixels (Flux2Scheduler's)."""
    import torch
    from PIL import Image

    from sdcli.families.flux2 import FLUX2_KLEIN
    from tests.reference import flux2_edit_comfy_ref as FC

    noise = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    comfy = torch.from_numpy(noise.astype(np.float32) / 255.0)[None]
    scaled = FC.scale_to_total_pixels(comfy, method, 1.0, steps)
    theirs_pixels = FC.crop_to_cells(scaled).movedim(-1, 1)
    ours = FLUX2_KLEIN.comfy_edit_inputs([image], 1024, f"{method} 1 {steps}")
    assert torch.equal(ours.references[0], theirs_pixels)
    assert ours.size == (theirs_pixels.shape[-1], theirs_pixels.shape[-2]) and ours.seen == ()
    assert ours.schedule_tokens == round(scaled.shape[1] * scaled.shape[2] / 256)
    assert (theirs_pixels.shape[-2:] != scaled.shape[1:3]) == (steps == 1)
