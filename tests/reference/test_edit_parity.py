"""`sdcli edit` through sdcli's job (job.generate.run, mode "edit") vs the references, in pixels.

Flux.1 Kontext: kontext_ref (Forge's Flux.1 sampling, which sdcli's matches, with ComfyUI's reference-latent
placement); Flux.2 klein and dev: flux2_ref (ComfyUI's, with its "index" reference placement, scale 10);
Qwen-Image-Edit:
diffusers' QwenImageEditPipeline on ComfyUI's schedule at CFG 1 (qwenimage_edit_ref says what is set). Tolerance 0
levels. Both sides encode the reference with the VAE posterior's mean. The tiny models take the references at
their own sizes (whole 16 px tokens, no resize on either side), so the comparison is of the sampling and the
placement; FluxKontextImageScale's size choice is compared on its own. Each comparison is shown to fail: another
reference image, the references in the other order, or Kontext's references at position index 0 moves the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import flux2_ref as F2
from tests.reference import forge_flux_text_ref as T
from tests.reference import kontext_ref as K
from tests.reference.flow_parity import unit_tensor

pytestmark = [pytest.mark.parity]
PROMPT = "make the cat purple"


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Reference images: a 32 px radial gradient, a 48x32 horizontal gradient, a 32 px checker, the radial
    gradient inverted."""
    from PIL import Image, ImageOps

    folder = tmp_path_factory.mktemp("refs")
    images = {"radial": Image.radial_gradient("L").convert("RGB").resize((32, 32)),
              "wide": Image.linear_gradient("L").rotate(90).convert("RGB").resize((48, 32)),
              "checker": Image.effect_mandelbrot((32, 32), (-2, -1.5, 1, 1.5), 50).convert("RGB")}
    images["inverted"] = ImageOps.invert(images["radial"])
    paths = {}
    for name, image in images.items():
        image.save(folder / f"{name}.png")
        paths[name] = folder / f"{name}.png"
    return paths


def ours(model, paths, prompt=PROMPT, **s):
    """sdcli's edit (default size: the first reference's) as uint8 arrays."""
    from sdcli.job.generate import run
    from sdcli.request.generation import GenerationRequest, validate

    fields = {"prompt": prompt, "negative_prompt": s.get("negative", ""), "steps": s.get("steps", 3),
              "cfg_scale": s.get("cfg", 1.0), "sampler": s.get("sampler", "Euler"),
              "schedule": s.get("schedule", "Simple").lower(), "seed": s.get("seed", 1), "mode": "edit",
              "references": tuple(str(p) for p in paths)}
    if "distilled_cfg" in s:
        fields["distilled_cfg_scale"] = s["distilled_cfg"]
    request = GenerationRequest(**fields)
    return [np.asarray(g.image) for g in run(request, model, validate(request), model_name="m", model_hash="h")]


def _unit(path):
    from PIL import Image

    with Image.open(path) as im:
        return unit_tensor(im), im.size


def kontext_theirs(model, paths, prompt=PROMPT, **s):
    """The Kontext reference's image at the first reference's size."""
    pipe = model.pipe
    units = [_unit(p) for p in paths]
    latents = [K.encode_reference(pipe.vae, u) for u, _ in units]
    width, height = units[0][1]
    out = K.sample_kontext(latents, pipe.transformer, pipe.text_encoder_2, pipe.tokenizer_2, pipe.text_encoder,
                           pipe.tokenizer, pipe.vae, prompt, s.get("negative", ""), (s.get("seed", 1),), width,
                           height, s.get("steps", 3), s.get("sampler", "Euler"), s.get("schedule", "Simple"),
                           s.get("cfg", 1.0), s.get("distilled_cfg", 2.5))
    with torch.no_grad():
        unit = T.decode_first_stage(pipe.vae, out)
    return [(255.0 * u).permute(1, 2, 0).numpy().astype(np.uint8) for u in unit]


def klein_theirs(model, paths, prompt=PROMPT, dev=False, **s):
    """ComfyUI's Flux.2 klein edit at the first reference's size; `dev`: Flux.2 dev's (its text encoding, its
    guidance: sdcli's default 4 unless distilled_cfg says)."""
    pipe = model.pipe
    units = [_unit(p) for p in paths]
    with torch.no_grad():
        latents = [F2.process_in(pipe.vae, pipe.vae.encode(2.0 * u - 1.0).latent_dist.mean) for u, _ in units]
    width, height = units[0][1]
    out = F2.sample(pipe.transformer, pipe.tokenizer, pipe.text_encoder, prompt, s.get("negative", ""),
                    s.get("seed", 1), width, height, s.get("steps", 3), s.get("sampler", "Euler"),
                    s.get("schedule", "Simple"), s.get("cfg", 1.0), 2.02, refs=latents,
                    **({"guidance": s.get("distilled_cfg", 4.0), "encoder": F2.encode_dev} if dev else {}))
    return F2.decode(pipe.vae, out)


def dev_theirs(model, paths, prompt=PROMPT, **s):
    return klein_theirs(model, paths, prompt, dev=True, **s)


def worst(a, b):
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))


def check(model, theirs, paths, perturbed_paths, **s):
    """sdcli equals the reference (0 levels); with other references on sdcli's side it does not."""
    difference = worst(ours(model, paths, **s), theirs(model, paths, **s))
    print(f"max difference {difference}: {[p.name for p in paths]} {s}")
    assert difference == 0
    assert worst(ours(model, perturbed_paths, **s), theirs(model, paths, **s)) > 0


@pytest.fixture(scope="module")
def kontext(tiny_family_pipe):
    return tiny_family_pipe("flux-kontext")


@pytest.mark.parametrize("settings", [
    {}, {"sampler": "DPM++ 2M", "schedule": "Karras", "steps": 4, "distilled_cfg": 3.5},
    {"cfg": 2.0, "negative": "blurry"},
])
def test_kontext_one_reference(kontext, refs, settings, single_thread):
    check(kontext, kontext_theirs, [refs["radial"]], [refs["checker"]], **settings)


def test_kontext_two_references_placed_as_comfyui_does(kontext, refs, single_thread):
    # 32x32 then 48x32 (rows x cols 4x4, 4x6): the second goes below the first (4 + 0 > 6 + 0 is false: h offset 4)
    check(kontext, kontext_theirs, [refs["radial"], refs["wide"]], [refs["radial"], refs["checker"]])
    # the placement matters: two references of one size in the other order (the second below the first)
    assert worst(ours(kontext, [refs["radial"], refs["checker"]]),
                 kontext_theirs(kontext, [refs["checker"], refs["radial"]])) > 0


def test_kontext_reference_at_index_0_moves_the_pixels(kontext, refs, monkeypatch, single_thread):
    """The comparison can fail on the position ids alone: references at index 0 (over the image's positions)."""
    monkeypatch.setattr(K, "REF_INDEX", 0)
    assert worst(ours(kontext, [refs["radial"]]), kontext_theirs(kontext, [refs["radial"]])) > 0


@pytest.mark.parametrize("settings", [{}, {"cfg": 3.0, "negative": "blurry", "sampler": "Heun"}])
def test_klein_references(tiny_flux2_pipe, refs, settings, single_thread):
    # The tiny Klein's image hardly depends on a reference's content (its order: test below), so the failing side
    # takes the radial gradient inverted, the largest change of content (a level on a few pixels).
    check(tiny_flux2_pipe, klein_theirs, [refs["radial"]], [refs["inverted"]], **settings)
    check(tiny_flux2_pipe, klein_theirs, [refs["wide"], refs["radial"]], [refs["wide"], refs["inverted"]],
          **settings)


@pytest.mark.parametrize("size", [(1024, 1024), (1920, 1080), (1080, 1920), (800, 600), (600, 800), (3000, 1000),
                                  (1000, 3000), (1000, 1001), (1100, 945)])
def test_kontext_reference_size_is_comfyuis_choice(size):
    from sdcli.families.kontext import FLUX_KONTEXT

    assert FLUX_KONTEXT.reference_size(size, 1024) == K.kontext_image_scale(*size)


@pytest.mark.parametrize("settings", [{}, {"schedule": "Flux2", "distilled_cfg": 2.5, "sampler": "DPM++ 2M"}])
def test_dev_references(tiny_flux2_dev_pipe, refs, settings, single_thread):
    """Flux.2 dev takes its references as klein does (diffusers' Flux2Pipeline: the same ids), with its guidance."""
    check(tiny_flux2_dev_pipe, dev_theirs, [refs["radial"]], [refs["checker"]], **settings)
    check(tiny_flux2_dev_pipe, dev_theirs, [refs["wide"], refs["radial"]], [refs["wide"], refs["checker"]],
          **settings)


def test_klein_reference_order_moves_the_pixels(tiny_flux2_pipe, refs, single_thread):
    """Reference i sits at time 10 (i + 1): the same two references in the other order are another image."""
    assert worst(ours(tiny_flux2_pipe, [refs["radial"], refs["checker"]]),
                 klein_theirs(tiny_flux2_pipe, [refs["checker"], refs["radial"]])) > 0


def test_qwen_image_edit_is_diffusers_pipeline(tiny_family_pipe, refs, tmp_path, single_thread):
    """Qwen-Image-Edit vs diffusers' QwenImageEditPipeline (qwenimage_edit_ref: ComfyUI's schedule, CFG 1) from a
    64 px reference; another reference image moves the pixels."""
    from PIL import Image

    from tests.reference import qwenimage_edit_ref as QE

    model = tiny_family_pipe("qwen-image-edit")
    for name in ("radial", "checker"):
        with Image.open(refs[name]) as im:
            im.resize((64, 64)).save(tmp_path / f"{name}.png")
    with Image.open(tmp_path / "radial.png") as im:
        theirs = [QE.sample(model.pipe, im.convert("RGB"), PROMPT, seed=1, steps=3)]
    difference = worst(ours(model, [tmp_path / "radial.png"], cfg=1.0), theirs)
    print(f"max difference {difference}")
    assert difference == 0
    assert worst(ours(model, [tmp_path / "checker.png"], cfg=1.0), theirs) > 0


def test_qwen_image_edit_true_cfg_is_comfyuis(tiny_family_pipe, refs, tmp_path, single_thread):
    """Qwen-Image-Edit at CFG 4 with a negative prompt vs ComfyUI's plain CFG on the edit pipeline's conditioning
    (qwenimage_edit_ref.sample_cfg), 0 levels; another negative prompt moves the pixels, and so does diffusers'
    own CFG (the pipeline's norm rescale, which sdcli does not do)."""
    from PIL import Image

    from tests.reference import qwenimage_edit_ref as QE

    model = tiny_family_pipe("qwen-image-edit")
    with Image.open(refs["radial"]) as im:
        im.resize((64, 64)).save(tmp_path / "radial.png")
    image = Image.open(tmp_path / "radial.png").convert("RGB")
    theirs = [QE.sample_cfg(model.pipe, image, PROMPT, "blurry, dark", 4.0, seed=1, steps=3)]
    mine = ours(model, [tmp_path / "radial.png"], cfg=4.0, negative="blurry, dark")
    difference = worst(mine, theirs)
    print(f"max difference {difference}")
    assert difference == 0
    assert worst(ours(model, [tmp_path / "radial.png"], cfg=4.0, negative="a cat"), theirs) > 0
    rescaled = [QE.sample(model.pipe, image, PROMPT, seed=1, steps=3, true_cfg_scale=4.0, negative="blurry, dark")]
    print(f"diffusers' rescaled CFG: {worst(mine, rescaled)} levels away")
    assert worst(mine, rescaled) > 0


def test_qwen_image_edit_plus_is_diffusers_pipeline(tiny_family_pipe, refs, tmp_path, single_thread):
    """Edit Plus vs diffusers' QwenImageEditPlusPipeline: two references ("Picture 1", "Picture 2"; Qwen2.5-VL sees
    them at 32 px, the VAE at 64 px); the images in the other order move the pixels."""
    from PIL import Image

    from tests.reference import qwenimage_edit_ref as QE

    model = tiny_family_pipe("qwen-image-edit-plus")
    for name, side in (("radial", 64), ("checker", 32)):
        with Image.open(refs[name]) as im:
            im.resize((side, side)).save(tmp_path / f"{name}.png")
    paths = [tmp_path / "radial.png", tmp_path / "checker.png"]
    images = [Image.open(p).convert("RGB") for p in paths]
    theirs = [QE.sample(model.pipe, images, PROMPT, seed=1, steps=3, plus=True)]
    difference = worst(ours(model, paths, cfg=1.0), theirs)
    print(f"max difference {difference}")
    assert difference <= 1  # the tiny model of 2026-12 rounds one value of 12,288 the other way (float order)
    assert worst(ours(model, paths[::-1], cfg=1.0), theirs) > 1


def test_qwen_image_edit_text_encoder_sees_the_image(tiny_family_pipe, refs, tmp_path, monkeypatch, single_thread):
    """The same reference latents with another image before Qwen2.5-VL's vision tower move the pixels: the
    instruction's conditioning depends on the image (the comparison above can fail on the encoder alone)."""
    from PIL import Image

    from sdcli.conditioning import qwenimage_edit

    model = tiny_family_pipe("qwen-image-edit")
    with Image.open(refs["radial"]) as im:
        im.resize((64, 64)).save(tmp_path / "radial.png")
    before = ours(model, [tmp_path / "radial.png"], cfg=1.0)
    init = qwenimage_edit.QwenImageEditPromptEncoder.__init__
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    monkeypatch.setattr(qwenimage_edit.QwenImageEditPromptEncoder, "__init__",
                        lambda self, tok, enc, images, emphasis="original", pictures=False:
                        init(self, tok, enc, [grey], emphasis, pictures))
    assert worst(ours(model, [tmp_path / "radial.png"], cfg=1.0), before) > 0
