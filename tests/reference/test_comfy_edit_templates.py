"""Graphs shaped as ComfyUI's official edit templates (their node types, links and widget values as the API `prompt`
chunk holds them; 32 px, 3 steps), replayed by `sdcli replay IMG -i REF` as sdcli edits on the tiny models against
the independent transcription of ComfyUI's Flux.1 Kontext edit (kontext_ref: ReferenceLatent's latents placed
after the image tokens, Flux.1's fixed mu 1.15 on a KSampler, CPU noise of the seed).

Flux.1 Kontext's template (Comfy-Org/workflow_templates flux_kontext_dev_basic): LoadImageOutput -> ImageStitch
(its second image bypassed) -> FluxKontextImageScale -> VAEEncode, the latent both ReferenceLatent's (on the
CLIPTextEncode) and the KSampler's (denoise 1: only its size counts), FluxGuidance 2.5, the negative a
ConditioningZeroOut of the prompt, KSampler euler/simple CFG 1. The tiny model takes the reference at its own
size (FluxKontextImageScale's trained sizes are for the 1024 px model; its choice is compared in
test_edit_parity)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tests.reference.test_edit_parity import kontext_theirs

pytestmark = [pytest.mark.parity]
PROMPT, SEED, STEPS = "make the cat purple", 5, 3


def levels(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def kontext_template(name="ref.png", guidance=2.5, cfg=1.0):
    """flux_kontext_dev_basic's graph as ComfyUI runs it (the bypassed LoadImageOutput and the muted
    EmptySD3LatentImage are not in the API graph)."""
    return {
        "37": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev-kontext.safetensors",
                                                       "weight_dtype": "default"}},
        "38": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "type": "flux",
                                                          "clip_name2": "t5xxl_fp16.safetensors", "device": "default"}},
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "142": {"class_type": "LoadImageOutput", "inputs": {"image": f"{name} [output]"}},
        "146": {"class_type": "ImageStitch", "inputs": {"direction": "right", "match_image_size": True,
                                                        "spacing_width": 0, "spacing_color": "white",
                                                        "image1": ["142", 0]}},
        "42": {"class_type": "FluxKontextImageScale", "inputs": {"image": ["146", 0]}},
        "124": {"class_type": "VAEEncode", "inputs": {"pixels": ["42", 0], "vae": ["39", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["38", 0]}},
        "177": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["6", 0], "latent": ["124", 0]}},
        "35": {"class_type": "FluxGuidance", "inputs": {"guidance": guidance, "conditioning": ["177", 0]}},
        "135": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "31": {"class_type": "KSampler", "inputs": {
            "seed": SEED, "steps": STEPS, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "model": ["37", 0], "positive": ["35", 0], "negative": ["135", 0], "latent_image": ["124", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0], "vae": ["39", 0]}},
        "136": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        "173": {"class_type": "PreviewImage", "inputs": {"images": ["42", 0]}},
    }


def two_references(graph, second="second.png"):
    """The template's other way to two references: the second image encoded on its own, a second ReferenceLatent
    chained after the first."""
    graph = copy.deepcopy(graph)
    graph["150"] = {"class_type": "LoadImage", "inputs": {"image": second, "upload": "image"}}
    graph["151"] = {"class_type": "FluxKontextImageScale", "inputs": {"image": ["150", 0]}}
    graph["152"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["151", 0], "vae": ["39", 0]}}
    graph["153"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["177", 0], "latent": ["152", 0]}}
    graph["35"]["inputs"]["conditioning"] = ["153", 0]
    return graph


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """A 32 px radial gradient, the same inverted, and a 48x32 horizontal gradient."""
    from PIL import Image, ImageOps

    folder = tmp_path_factory.mktemp("edit-refs")
    Image.radial_gradient("L").convert("RGB").resize((32, 32)).save(folder / "radial.png")
    ImageOps.invert(Image.radial_gradient("L").convert("RGB").resize((32, 32))).save(folder / "inverted.png")
    Image.linear_gradient("L").rotate(90).convert("RGB").resize((48, 32)).save(folder / "wide.png")
    return folder


def replay(model, tmp_path, graph, inputs, **overrides):
    from sdcli.io.replay import plan_replay
    from sdcli.job.generate import run
    from sdcli.request.generation import validate
    from tests.io.tool_images import comfy_png

    request = plan_replay(comfy_png(tmp_path / "t.png", graph), overrides, model_override="m",
                          input_images=inputs).request
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h")][0]


@pytest.fixture(scope="module")
def kontext(tiny_family_pipe):
    return tiny_family_pipe("flux-kontext")


def theirs(model, paths, **settings):
    return kontext_theirs(model, paths, PROMPT, seed=SEED, steps=STEPS, **settings)[0]


def test_kontext_template(kontext, refs, tmp_path, single_thread):
    """The template replays as an edit of -i: 0 levels. ReferenceLatent matters (the same graph without it, a
    txt2img of the reference's size, is off: the tiny
    model's reference tokens move a few levels), so does FluxGuidance's 2.5 (3.5 in the graph: off) and the
    reference's pixels (another image: off)."""
    radial, inverted = refs / "radial.png", refs / "inverted.png"
    ours = replay(kontext, tmp_path, kontext_template(), [radial])
    reference = theirs(kontext, [radial])
    other_image = replay(kontext, tmp_path, kontext_template(), [inverted])
    guidance = replay(kontext, tmp_path, kontext_template(guidance=3.5), [radial])
    plain = kontext_template()
    plain["35"]["inputs"]["conditioning"] = ["6", 0]
    plain["5"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}}
    plain["31"]["inputs"]["latent_image"] = ["5", 0]
    without = replay(kontext, tmp_path, plain, None)
    print(f"kontext template: {levels(ours, reference)}; without ReferenceLatent {levels(without, reference)}, "
          f"guidance 3.5 {levels(guidance, reference)}, another reference image "
          f"{levels(other_image, reference)}")
    assert levels(ours, reference) == 0
    assert levels(without, reference) > 0 and levels(guidance, reference) > 0
    assert levels(other_image, reference) > 0


def test_kontext_template_two_references_in_chain_order(kontext, refs, tmp_path, single_thread):
    """Two ReferenceLatents chained: the first node's image first (ComfyUI appends), 0 levels, with a 32 px and
    a 48x32 image (the second placed below the first) and with two of one size; the other order is off."""
    radial, inverted, wide = refs / "radial.png", refs / "inverted.png", refs / "wide.png"
    graph = two_references(kontext_template())
    ours = replay(kontext, tmp_path, graph, [radial, wide])
    assert levels(ours, theirs(kontext, [radial, wide])) == 0
    ours = replay(kontext, tmp_path, graph, [radial, inverted])
    reference, swapped = theirs(kontext, [radial, inverted]), theirs(kontext, [inverted, radial])
    print(f"kontext two references: {levels(ours, reference)}; the other order {levels(ours, swapped)}")
    assert levels(ours, reference) == 0 and levels(ours, swapped) > 0


def test_kontext_template_references_found_by_name(kontext, refs, tmp_path, single_thread):
    """Without -i the graph's file names are looked up beside the image (ComfyUI's `[output]` tag dropped)."""
    import shutil

    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    shutil.copy(refs / "radial.png", tmp_path / "photo.png")
    plan = plan_replay(comfy_png(tmp_path / "t.png", kontext_template("photo.png")), {}, model_override="m")
    assert plan.request.mode == "edit" and plan.request.init is None
    assert plan.request.references == (str((tmp_path / "photo.png").resolve()),)
    assert plan.request.distilled_cfg_scale == 2.5 and plan.request.width is None


@pytest.mark.parametrize("change,message", [
    (lambda g: g.pop("42") and g["124"]["inputs"].update(pixels=["146", 0]), "encoded at its own size"),
    (lambda g: g["146"]["inputs"].update(image2=["142", 0]), "ImageStitch"),
    (lambda g: g["31"]["inputs"].update(denoise=0.8), "denoise 0.8"),
    (lambda g: g["31"]["inputs"].update(cfg=2.0), "negative conditioning's reference images"),
])
def test_kontext_template_variants_refused_by_name(tmp_path, change, message):
    """What sdcli's edit cannot do as the graph did is refused before any model loads, naming it (exit 2)."""
    from sdcli.errors import UsageError
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    graph = kontext_template()
    change(graph)
    with pytest.raises(UsageError, match="cannot replay") as caught:
        plan_replay(comfy_png(tmp_path / "t.png", graph), {}, model_override="m", input_images=[tmp_path / "x.png"])
    assert message in str(caught.value)
    assert caught.value.exit_code == 2
    json.dumps(graph)  # the changed graph is still one ComfyUI could write


def test_kontext_template_through_the_cli(tiny_family, kontext, refs, tmp_path, single_thread):
    """`sdcli replay IMG -i REF -m MODEL` writes the edit, in the reference's pixels; a second -i for the
    one-reference graph is exit 2 naming -i, nothing written."""
    from PIL import Image
    from typer.testing import CliRunner

    from sdcli.cli import app
    from tests.io.tool_images import comfy_png

    image = comfy_png(tmp_path / "t.png", kontext_template())
    radial, model = refs / "radial.png", tiny_family("flux-kontext")
    result = CliRunner().invoke(app, ["replay", str(image), "-i", str(radial), "-m", str(model), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 1
    with Image.open(written[0]) as im:
        assert levels(np.asarray(im.convert("RGB")), theirs(kontext, [radial])) == 0
    result = CliRunner().invoke(app, ["replay", str(image), "-i", str(radial), "-i", str(radial), "-m", str(model),
                                      "-o", str(tmp_path / "two")])
    assert result.exit_code == 2 and "-i:" in result.output and "takes 1 reference image" in result.output
    assert not (tmp_path / "two").exists()


def qwen_edit_template(plus=False):
    """image_qwen_image_edit(_2509)'s graph: LoRA, ModelSamplingAuraFlow 3, CFGNorm 1, TextEncodeQwenImageEdit(Plus)
    for both prompts with the VAE and the image, KSampler on the image's VAEEncode."""
    encoder = "TextEncodeQwenImageEditPlus" if plus else "TextEncodeQwenImageEdit"
    image = {"image1": ["78", 0]} if plus else {"image": ["78", 0]}
    return {
        "37": {"class_type": "UNETLoader", "inputs": {"unet_name": "qwen_image_edit.safetensors",
                                                       "weight_dtype": "default"}},
        "89": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "lightning.safetensors",
                                                                "strength_model": 1.0, "model": ["37", 0]}},
        "66": {"class_type": "ModelSamplingAuraFlow", "inputs": {"shift": 3, "model": ["89", 0]}},
        "75": {"class_type": "CFGNorm", "inputs": {"strength": 1, "model": ["66", 0]}},
        "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": "qwen_2.5_vl_7b.safetensors", "type": "qwen_image"}},
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
        "78": {"class_type": "LoadImage", "inputs": {"image": "ref.png", "upload": "image"}},
        "76": {"class_type": encoder, "inputs": {"prompt": PROMPT, "clip": ["38", 0], "vae": ["39", 0], **image}},
        "77": {"class_type": encoder, "inputs": {"prompt": "", "clip": ["38", 0], "vae": ["39", 0], **image}},
        "88": {"class_type": "VAEEncode", "inputs": {"pixels": ["78", 0], "vae": ["39", 0]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": SEED, "steps": 4, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "model": ["75", 0], "positive": ["76", 0], "negative": ["77", 0], "latent_image": ["88", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["39", 0]}},
        "60": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def klein_edit_template():
    """image_flux2_klein_image_edit_4b_distilled's graph: LoadImage -> ImageScaleToTotalPixels -> VAEEncode ->
    ReferenceLatent on both conditionings, GetImageSize sizing the EmptyFlux2LatentImage and Flux2Scheduler
    (replayed: test_comfy_flux2_edit_templates)."""
    return {
        "70": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux-2-klein-4b.safetensors",
                                                       "weight_dtype": "default"}},
        "71": {"class_type": "CLIPLoader", "inputs": {"clip_name": "qwen_3_4b.safetensors", "type": "flux2"}},
        "72": {"class_type": "VAELoader", "inputs": {"vae_name": "flux2-vae.safetensors"}},
        "76": {"class_type": "LoadImage", "inputs": {"image": "ref.png", "upload": "image"}},
        "80": {"class_type": "ImageScaleToTotalPixels", "inputs": {"upscale_method": "nearest-exact", "megapixels": 1,
                                                                    "resolution_steps": 1, "image": ["76", 0]}},
        "81": {"class_type": "GetImageSize", "inputs": {"image": ["80", 0]}},
        "79": {"class_type": "VAEEncode", "inputs": {"pixels": ["80", 0], "vae": ["72", 0]}},
        "74": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["71", 0]}},
        "82": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["74", 0]}},
        "77": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["74", 0], "latent": ["79", 0]}},
        "78": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["82", 0], "latent": ["79", 0]}},
        "66": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": ["81", 0], "height": ["81", 1],
                                                                 "batch_size": 1}},
        "62": {"class_type": "Flux2Scheduler", "inputs": {"steps": 4, "width": ["81", 0], "height": ["81", 1]}},
        "73": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "63": {"class_type": "CFGGuider", "inputs": {"cfg": 1, "model": ["70", 0], "positive": ["77", 0],
                                                     "negative": ["78", 0]}},
        "61": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "64": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["73", 0], "guider": ["63", 0],
                                                                 "sampler": ["61", 0], "sigmas": ["62", 0],
                                                                 "latent_image": ["66", 0]}},
        "65": {"class_type": "VAEDecode", "inputs": {"samples": ["64", 0], "vae": ["72", 0]}},
        "94": {"class_type": "SaveImage", "inputs": {"filename_prefix": "Flux2-Klein", "images": ["65", 0]}},
    }


def kontext_workflow(name="ref.png"):
    """flux_kontext_dev_basic as the UI saves it (the `workflow` chunk): widgets in the template file's order, its
    second LoadImageOutput bypassed (mode 4), its EmptySD3LatentImage muted, notes."""
    def node(id_, kind, widgets=(), inputs=(), mode=0):
        return {"id": id_, "type": kind, "mode": mode, "widgets_values": list(widgets),
                "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs]}

    nodes = [
        node(39, "VAELoader", ["ae.safetensors"]),
        node(38, "DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors", "flux", "default"]),
        node(135, "ConditioningZeroOut", [], [("conditioning", "CONDITIONING", 237)]),
        node(173, "PreviewImage", [], [("images", "IMAGE", 289)]),
        node(136, "SaveImage", ["ComfyUI"], [("images", "IMAGE", 240)]),
        node(147, "LoadImageOutput", [f"{name} [output]", False, "refresh", "image"], mode=4),
        node(8, "VAEDecode", [], [("samples", "LATENT", 52), ("vae", "VAE", 61)]),
        node(142, "LoadImageOutput", [f"{name} [output]", False, "refresh", "image"]),
        node(124, "VAEEncode", [], [("pixels", "IMAGE", 222), ("vae", "VAE", 223)]),
        node(42, "FluxKontextImageScale", [], [("image", "IMAGE", 251)]),
        node(175, "MarkdownNote", ["Use Ctrl + B to enable multiple image input."]),
        node(146, "ImageStitch", ["right", True, 0, "white"], [("image1", "IMAGE", 249), ("image2", "IMAGE", 250)]),
        node(35, "FluxGuidance", [2.5], [("conditioning", "CONDITIONING", 292)]),
        node(37, "UNETLoader", ["flux1-dev-kontext_fp8_scaled.safetensors", "default"]),
        node(177, "ReferenceLatent", [], [("conditioning", "CONDITIONING", 294), ("latent", "LATENT", 293)]),
        node(188, "EmptySD3LatentImage", [1024, 1024, 1], mode=4),
        node(6, "CLIPTextEncode", [PROMPT], [("clip", "CLIP", 59)]),
        node(31, "KSampler", [SEED, "randomize", STEPS, 1, "euler", "simple", 1],
             [("model", "MODEL", 58), ("positive", "CONDITIONING", 57), ("negative", "CONDITIONING", 238),
              ("latent_image", "LATENT", 291)]),
    ]
    links = [[52, 31, 0, 8, 0, "LATENT"], [57, 35, 0, 31, 1, "CONDITIONING"], [58, 37, 0, 31, 0, "MODEL"],
             [59, 38, 0, 6, 0, "CLIP"], [61, 39, 0, 8, 1, "VAE"], [222, 42, 0, 124, 0, "IMAGE"],
             [223, 39, 0, 124, 1, "VAE"], [237, 6, 0, 135, 0, "CONDITIONING"], [238, 135, 0, 31, 2, "CONDITIONING"],
             [240, 8, 0, 136, 0, "IMAGE"], [249, 142, 0, 146, 0, "IMAGE"], [250, 147, 0, 146, 1, "IMAGE"],
             [251, 146, 0, 42, 0, "IMAGE"], [289, 42, 0, 173, 0, "IMAGE"], [291, 124, 0, 31, 3, "LATENT"],
             [292, 177, 0, 35, 0, "CONDITIONING"], [293, 124, 0, 177, 1, "LATENT"],
             [294, 6, 0, 177, 0, "CONDITIONING"]]
    return {"nodes": nodes, "links": links, "version": 0.4}


def test_kontext_template_from_the_ui_workflow(refs, tmp_path):
    """The template read from the UI workflow chunk alone gives the API graph's edit: the bypassed second image
    leaves ImageStitch one image, nothing unmapped; with that image enabled the stitch is refused."""
    from sdcli.io.replay import plan_replay
    from tests.io.tool_images import comfy_png

    radial = refs / "radial.png"
    ui = plan_replay(comfy_png(tmp_path / "ui.png", workflow=kontext_workflow()), {}, model_override="m",
                     input_images=[radial])
    api = plan_replay(comfy_png(tmp_path / "api.png", kontext_template()), {}, model_override="m",
                      input_images=[radial])
    assert ui.request == api.request and ui.request.mode == "edit"
    enabled = kontext_workflow()
    enabled["nodes"][5]["mode"] = 0
    with pytest.raises(Exception, match="ImageStitch"):
        plan_replay(comfy_png(tmp_path / "both.png", workflow=enabled), {}, model_override="m", input_images=[radial])


@pytest.mark.parametrize("size", [(1000, 700), (777, 1333), (640, 480), (1200, 800)])
def test_kontext_reference_pixels_are_flux_kontext_image_scales(size):
    """The released Kontext model's reference as FluxKontextImageScale makes it (kontext_ref's transcription of
    common_upscale: a crop of whole pixels, then Lanczos through uint8): 0 levels. PIL's ImageOps.fit (the base
    family's fit, a fractional crop box) is levels off wherever the crop is not whole; 1200x800 has 1248x832's
    aspect ratio (nothing cropped), where the two agree."""
    import torch
    from PIL import Image, ImageFilter

    from sdcli.families.base import Family
    from sdcli.families.kontext import FLUX_KONTEXT, kontext_size
    from tests.reference import kontext_ref as K

    noise = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
    theirs = K.kontext_image_scale_pixels(torch.from_numpy(np.asarray(image).astype(np.float32) / 255.0)[None])
    theirs = (255.0 * theirs[0]).round().numpy().astype(np.uint8)
    target = kontext_size(size)
    ours = np.asarray(FLUX_KONTEXT.fit_reference(image, target))
    pil_fit = np.asarray(Family.fit_reference(FLUX_KONTEXT, image, target))
    print(f"{size} -> {target}: {levels(ours, theirs)}; ImageOps.fit {levels(pil_fit, theirs)}")
    assert ours.shape == theirs.shape and levels(ours, theirs) == 0
    if size != (1200, 800):
        assert levels(pil_fit, theirs) > 0


@pytest.mark.parametrize("strength,cfg", [(1.0, 2.5), (0.8, 2.5), (0.8, 1.0)])
def test_cfg_norm_is_comfyuis(tiny_family_pipe, tmp_path, strength, cfg, single_thread):
    """The Qwen-Image-Edit templates' CFGNorm (after ModelSamplingAuraFlow, before the sampler) on Qwen-Image's
    template graph replays as --cfg-norm: 0 levels against qwenimage_ref with the node's post-CFG function
    (at CFG 1 too, where a strength below 1 still scales); the same graph without the node is off."""
    from tests.reference import comfy_flow_text_ref as R
    from tests.reference import comfy_ref as C
    from tests.reference import qwenimage_ref as Q
    from tests.reference.test_comfy_templates import NEGATIVE, template
    from tests.reference.test_comfy_templates import PROMPT as TEXT
    from tests.reference.test_comfy_templates import replay as replay_graph

    model = tiny_family_pipe("qwen-image")
    graph = template("qwen_image", aura=3.1, cfg=cfg)
    graph["75"] = {"class_type": "CFGNorm", "inputs": {"strength": strength, "model": ["40", 0]}}
    graph["3"]["inputs"]["model"] = ["75", 0]
    theirs = Q.sample(model.pipe, TEXT, NEGATIVE, SEED, 32, 32, STEPS, "Euler", "Simple", cfg, 1.15,
                      encoder=R.qwen_image_encode, ms=C.DiscreteFlow(shift=3.1, multiplier=1.0),
                      post_cfg=Q.cfg_norm(strength))
    ours = replay_graph(model, tmp_path, graph)
    without = replay_graph(model, tmp_path, template("qwen_image", aura=3.1, cfg=cfg))
    print(f"CFGNorm {strength} at CFG {cfg}: {levels(ours, theirs)}; without the node {levels(without, theirs)}")
    assert levels(ours, theirs) == 0 and levels(without, theirs) > 0


def test_cfg_norm_is_written_and_refused_off_the_loop(tiny_family_pipe, single_thread):
    """--cfg-norm is written as `CFG norm` (not written when off); with a timestep sampler (DDIM: noise
    predictions, not denoised latents) it is one line naming the flag."""
    from sdcli.errors import UsageError
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, validate

    model = tiny_family_pipe("qwen-image")
    fields = {"prompt": "a cat", "steps": 2, "width": 32, "height": 32, "seed": 1, "cfg_scale": 2.0,
              "sampler": "Euler", "schedule": "simple"}
    normed = GenerationRequest(**fields, cfg_norm=0.8)
    image = next(iter(run(normed, model, validate(normed), model_name="m", model_hash="h")))
    assert "CFG norm: 0.8" in image.infotext
    plain = GenerationRequest(**fields)
    assert "CFG norm" not in next(iter(run(plain, model, validate(plain), model_name="m", model_hash="h"))).infotext
    timestep = GenerationRequest(**{**fields, "sampler": "DDIM"}, cfg_norm=1.0)
    with pytest.raises(UsageError, match="--cfg-norm"):
        list(run(timestep, model, validate(timestep), model_name="m", model_hash="h"))
