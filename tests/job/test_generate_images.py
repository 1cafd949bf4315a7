"""img2img, inpaint and outpaint through generate.run, on the tiny checkpoints (CPU)."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from sdcli.errors import ModelError
from sdcli.io.images import PreparedInputs
from sdcli.io.metadata import parse_infotext
from sdcli.job.generate import run
from sdcli.request.generation import (
    GenerationRequest,
    ImageInput,
    InpaintSettings,
    OutpaintSettings,
    validate,
)
from tests.images import write_inputs


def px(image):
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def files(tmp_path):
    """A 48x40 input with structure (in.png), and a mask with a white square in the middle (mask.png)."""
    write_inputs(tmp_path, (48, 40))
    return tmp_path


def generate(pipe, mode, files, *, strength=0.75, steps=4, inpaint=None, outpaint=None, on_step=None, first_seed=1,
             **fields):
    parts = {"init": ImageInput(str(files / "in.png"), strength, fields.pop("resize", "just"))}
    if mode in ("inpaint", "outpaint"):
        parts["inpaint"] = inpaint or InpaintSettings(str(files / "mask.png") if mode == "inpaint" else None)
    if mode == "outpaint":
        parts["outpaint"] = outpaint or OutpaintSettings(left=16, up=8)
    request = GenerationRequest(prompt="a harbour", steps=steps, seed=first_seed, mode=mode, **parts, **fields)
    return list(run(request, pipe, validate(request), model_name="tiny", model_hash="0123456789",
                    on_step=on_step))


def original(files):
    return px(Image.open(files / "in.png"))


def blurred_mask(files, radius=4):
    return px(Image.open(files / "mask.png").filter(ImageFilter.GaussianBlur(radius)))


# -- img2img --------------------------------------------------------------------------------------

# The WebUI runs int(min(strength, 0.999) x steps) + 1 steps (the last ones of the schedule).
@pytest.mark.parametrize("steps, strength, expected", [(4, 0.5, 3), (4, 0.75, 4), (3, 1.0, 3), (8, 0.3, 3)])
def test_img2img_runs_steps_times_strength(tiny_pipe, files, steps, strength, expected):
    calls = []
    generate(tiny_pipe, "img2img", files, steps=steps, strength=strength, sampler="Euler",
             on_step=lambda step, total: calls.append((step, total)))
    assert calls == [(i + 1, expected) for i in range(expected)]


def test_img2img_default_size_is_the_input_rounded_to_8(tiny_pipe, tmp_path):
    Image.new("RGB", (45, 30), (90, 60, 30)).save(tmp_path / "in.png")
    item = generate(tiny_pipe, "img2img", tmp_path, steps=2)[0]
    assert item.image.size == (48, 32) and parse_infotext(item.infotext)[2]["Size"] == "48x32"


@pytest.mark.parametrize("resize", ["just", "crop", "fill"])
def test_img2img_width_height_with_each_resize_mode(tiny_pipe, files, resize):
    item = generate(tiny_pipe, "img2img", files, steps=2, width=32, height=48, resize=resize)[0]
    assert item.image.size == (32, 48)


def test_img2img_same_seed_same_pixels_strength_and_input_matter(tiny_pipe, files):
    first = px(generate(tiny_pipe, "img2img", files, strength=0.5)[0].image)
    assert np.array_equal(first, px(generate(tiny_pipe, "img2img", files, strength=0.5)[0].image))
    assert np.abs(first - px(generate(tiny_pipe, "img2img", files, strength=0.3)[0].image)).max() > 2
    Image.new("RGB", (48, 40), (250, 250, 250)).save(files / "in.png")
    assert np.abs(first - px(generate(tiny_pipe, "img2img", files, strength=0.5)[0].image)).max() > 2


def test_img2img_infotext_records_denoising_strength(tiny_pipe, files):
    params = parse_infotext(generate(tiny_pipe, "img2img", files, strength=0.6, steps=5)[0].infotext)[2]
    assert params["Denoising strength"] == "0.6" and params["Steps"] == "5"
    assert "Mask blur" not in params


def test_inpainting_checkpoint_cannot_run_txt2img_or_img2img(tiny_inpaint_pipe, files):
    with pytest.raises(ModelError, match="img2img needs a UNet with 4 input channels; this model's has 9"):
        generate(tiny_inpaint_pipe, "img2img", files)


# -- inpaint ---------------------------------------------------------------------------------------

@pytest.fixture(params=["ordinary", "inpainting"])
def any_pipe(request, tiny_pipe, tiny_inpaint_pipe):
    """Both kinds of checkpoint: 4-channel (latent blending) and 9-channel UNet."""
    return tiny_pipe if request.param == "ordinary" else tiny_inpaint_pipe


@pytest.mark.parametrize("which, channels", [("tiny_pipe", 4), ("tiny_inpaint_pipe", 9)])
def test_the_unet_kind_decides_how_inpainting_runs(request, files, which, channels):
    pipe, seen = request.getfixturevalue(which), []
    hook = pipe.pipe.unet.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[1]))
    try:
        generate(pipe, "inpaint", files, steps=2)
    finally:
        hook.remove()
    assert set(seen) == {channels}, "9 = latents + mask + masked-image latents; 4 = latents, blended with the mask"


def test_whole_picture_keeps_pixels_outside_the_blurred_mask(any_pipe, files, monkeypatch):
    out = px(generate(any_pipe, "inpaint", files)[0].image)
    outside, inside = blurred_mask(files) == 0, blurred_mask(files) >= 200
    assert out.shape == original(files).shape
    # Stated tolerance for "whole picture": 0 levels where the blurred mask is 0 (pasted back).
    assert np.abs(out - original(files))[outside].max() == 0
    assert np.abs(out - original(files))[inside].max() > 20, "the masked area was repainted"
    # Without the paste-back the VAE round trip alone moves them: the paste-back is what keeps them.
    monkeypatch.setattr(PreparedInputs, "finish", lambda self, image: image)
    raw = px(generate(any_pipe, "inpaint", files)[0].image)
    assert np.abs(raw - original(files))[outside].max() > 20


def test_mask_blur_softens_the_edge(tiny_pipe, files):
    hard = InpaintSettings(str(files / "mask.png"), mask_blur=0)
    out = px(generate(tiny_pipe, "inpaint", files, inpaint=hard)[0].image)
    outside_hard = px(Image.open(files / "mask.png")) == 0
    assert np.abs(out - original(files))[outside_hard].max() == 0
    fringe = (blurred_mask(files, 8) > 0) & outside_hard
    soft = px(generate(tiny_pipe, "inpaint", files, inpaint=InpaintSettings(str(files / "mask.png"), mask_blur=8))[0]
              .image)
    assert np.abs(soft - original(files))[fringe].max() > 0, "the blurred mask reaches past the hard edge"
    assert np.abs(soft - original(files))[blurred_mask(files, 8) == 0].max() == 0


def test_only_masked_generates_the_crop_and_pastes_it_back(any_pipe, files):
    settings = InpaintSettings(str(files / "mask.png"), area="masked", padding=4)
    item = generate(any_pipe, "inpaint", files, inpaint=settings, width=64, height=64)[0]
    out = px(item.image)
    assert item.image.size == (48, 40), "the output keeps the input's size"
    assert np.abs(out - original(files))[blurred_mask(files) == 0].max() == 0
    assert np.abs(out - original(files))[blurred_mask(files) >= 200].max() > 20
    params = parse_infotext(item.infotext)[2]
    assert params["Size"] == "64x64", "the crop was generated at the full generation size"
    assert (params["Inpaint area"], params["Masked area padding"]) == ("Only masked", "4")


def test_invert_mask_repaints_the_other_side(tiny_pipe, files):
    settings = InpaintSettings(str(files / "mask.png"), invert_mask=True, mask_blur=0)
    item = generate(tiny_pipe, "inpaint", files, inpaint=settings)[0]
    inside = px(Image.open(files / "mask.png")) == 255
    assert np.abs(px(item.image) - original(files))[inside].max() == 0
    assert parse_infotext(item.infotext)[2]["Mask mode"] == "Inpaint not masked"


@pytest.mark.parametrize("pipeline", [False, True], ids=["own-loop", "diffusers-pipeline"])
def test_masked_content_modes(any_pipe, files, pipeline, monkeypatch):
    from sdcli.job import generate as generate_module

    sampler = "Euler a"
    if pipeline:  # the path other model families take
        monkeypatch.setattr(generate_module, "runs_own_loop", lambda *_: False)

    def inside_pixels(content):
        settings = InpaintSettings(str(files / "mask.png"), masked_content=content)
        return px(generate(any_pipe, "inpaint", files, inpaint=settings, strength=0.3, steps=6,
                           sampler=sampler)[0].image)

    results = {c: inside_pixels(c) for c in ("original", "latent-noise", "latent-nothing")}
    inside = blurred_mask(files) >= 200
    for a, b in (("original", "latent-noise"), ("original", "latent-nothing"), ("latent-noise", "latent-nothing")):
        assert np.abs(results[a] - results[b])[inside].max() > 2, (a, b)


def test_masked_content_fill_prefills_the_input_as_the_webui(files):
    from sdcli.io.images import prepare

    request = GenerationRequest(prompt="x", mode="inpaint", init=ImageInput(str(files / "in.png")),
                                inpaint=InpaintSettings(str(files / "mask.png"), masked_content="fill"))
    filled = px(prepare(request).image)
    inside = blurred_mask(files) >= 200
    assert np.abs(filled - original(files))[inside].max() > 20
    assert filled[inside].std() < original(files)[inside].std() / 2  # smooth colours blurred in


def test_inpaint_infotext_round_trips_and_same_seed_same_pixels(any_pipe, files):
    settings = InpaintSettings(str(files / "mask.png"), mask_blur=6, masked_content="latent-noise")
    first, again = (generate(any_pipe, "inpaint", files, inpaint=settings, strength=0.8)[0] for _ in range(2))
    assert np.array_equal(px(first.image), px(again.image))
    params = parse_infotext(first.infotext)[2]
    assert {k: params[k] for k in ("Denoising strength", "Mask blur", "Inpaint area", "Masked content")} == {
        "Denoising strength": "0.8", "Mask blur": "6", "Inpaint area": "Whole picture",
        "Masked content": "latent noise"}
    assert "Masked area padding" not in params


def test_batches_give_each_image_its_seed(tiny_pipe, files):
    batch = generate(tiny_pipe, "inpaint", files, batch_size=2)
    single = generate(tiny_pipe, "inpaint", files, first_seed=2)
    assert [i.seed for i in batch] == [1, 2]
    assert np.abs(px(batch[1].image) - px(single[0].image)).max() <= 1


# -- outpaint --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fill", ["edge", "noise", "blur"])
def test_outpaint_preserves_the_original_pixels(any_pipe, files, fill):
    item = generate(any_pipe, "outpaint", files, outpaint=OutpaintSettings(left=12, down=8, fill=fill))[0]
    out = px(item.image)
    assert item.image.size == (64, 48), "48+12 -> 64 wide (rounded up to 8), 40+8 tall"
    x = 12 + 4  # the 4 px of rounding go to the left: it is the only side grown horizontally
    assert np.array_equal(out[0:40, x:x + 48], original(files))
    assert out[:, :x].std() > 5, "the new area was painted"
    params = parse_infotext(item.infotext)[2]
    assert (params["Outpaint"], params["Outpaint fill"], params["Mask blur"]) == ("left 12 down 8", fill, "4")


def test_outpaint_same_seed_same_pixels(tiny_inpaint_pipe, files):
    first, again = (px(generate(tiny_inpaint_pipe, "outpaint", files)[0].image) for _ in range(2))
    assert np.array_equal(first, again)


def test_whole_picture_with_a_size_change_keeps_the_resized_input(tiny_pipe, tmp_path):
    from sdcli.io.images import resize

    image, mask = (Image.open(path) for path in write_inputs(tmp_path, (45, 30)))
    out = px(generate(tiny_pipe, "inpaint", tmp_path)[0].image)
    assert out.shape == (32, 48, 3), "45x30 -> 48x32, the input's size rounded to 8"
    outside = px(resize(mask.filter(ImageFilter.GaussianBlur(4)), (48, 32), "just")) == 0
    assert np.array_equal(out[outside], px(resize(image, (48, 32), "just"))[outside])
