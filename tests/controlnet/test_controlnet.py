"""ControlNet in sdcli's loop (core.controlnets, sampling.control) on tiny models and tiny ControlNets."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdcli.controlnet.plan import plan_controlnets
from sdcli.controlnet.units import ControlUnit, parse_unit, unit_infotext
from sdcli.errors import ModelError
from sdcli.job.generate import run
from sdcli.job.load import ModelCache
from sdcli.models.folders import Library
from sdcli.request.generation import GenerationRequest, ImageInput, InpaintSettings, validate
from tests.images import write_inputs


def px(image):
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    """Tiny ControlNets: SD1 (two seeds, folder and original-layout single file) and SDXL (folder, file);
    a control image with a black disc on white."""
    from sdcli.controlnet.files import build_tiny_controlnet

    root = tmp_path_factory.mktemp("controlnets")
    image = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(image).ellipse((20, 8, 70, 56), fill="black")
    image.save(root / "disc.png")
    Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)).save(root / "ramp.png")
    return {
        "sd1": build_tiny_controlnet(root / "cn-sd1", "sd1"),
        "sd1_b": build_tiny_controlnet(root / "cn-sd1-b", "sd1", seed=1),
        "sd1_file": build_tiny_controlnet(root / "cn-sd1.safetensors", "sd1", single_file=True),
        "xl": build_tiny_controlnet(root / "cn-xl", "sdxl"),
        "xl_file": build_tiny_controlnet(root / "cn-xl.safetensors", "sdxl", single_file=True),
        "disc": root / "disc.png", "ramp": root / "ramp.png",
    }


@pytest.fixture(scope="module")
def xl_pipe(tiny_xl):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_xl["base"])


def unit(cn, which="sd1", image="disc", **fields):
    return ControlUnit(model=str(cn[which]), image=str(cn[image]), **fields)


def generate(pipe, units=(), *, steps=4, mode="txt2img", files=None, sampler="Euler a", **fields):
    """Images (np arrays) and infotexts of one 2-image batch at 64x64 with these ControlNet units."""
    parts = {}
    if mode != "txt2img":
        parts["init"] = ImageInput(str(files / "in.png"), 0.75)
    if mode == "inpaint":
        parts["inpaint"] = InpaintSettings(str(files / "mask.png"))
    request = GenerationRequest(prompt="a harbour", steps=steps, seed=3, width=64, height=64, batch_size=2,
                                sampler=sampler, mode=mode, controlnets=tuple(units), **parts, **fields)
    plan = plan_controlnets(request.controlnets, Library({}), allow_pickle=False)
    control = ModelCache().control(plan, pipe, allow_pickle=False)
    images = list(run(request, pipe, validate(request), model_name="tiny", model_hash="0123456789", control=control))
    return [px(i.image) for i in images], [i.infotext for i in images]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))


@pytest.fixture(scope="module")
def plain(tiny_pipe):
    return generate(tiny_pipe)


@pytest.fixture(scope="module")
def controlled(tiny_pipe, cn):
    return generate(tiny_pipe, [unit(cn)])


def test_a_controlnet_changes_the_pixels_and_is_recorded_as_the_extension_does(plain, controlled):
    assert not same(plain, controlled)
    assert "ControlNet 0" not in plain[1][0]
    assert ('ControlNet 0: "Module: none, Model: cn-sd1 [' in controlled[1][0]
            and ', Weight: 1.0, Resize Mode: Crop and Resize, Low Vram: False, Guidance Start: 0.0, Guidance End: '
            '1.0, Pixel Perfect: False, Control Mode: Balanced, Hr Option: Both, Save Detected Map: True"'
            in controlled[1][0])


def test_weight_zero_gives_exactly_the_pixels_without_controlnet(tiny_pipe, cn, plain):
    # Zero residuals are added to the UNet's skip connections: x + 0.0 == x bit for bit.
    assert same(generate(tiny_pipe, [unit(cn, weight=0.0)]), plain)


def test_a_guidance_range_no_step_reaches_is_no_controlnet(tiny_pipe, cn, plain, controlled):
    # 4 steps: the WebUI's sampling_step is 0, 0, 1, 2 at the 4 steps -> percent 0, 0, 0.25, 0.5.
    assert same(generate(tiny_pipe, [unit(cn, guidance_start=0.6, guidance_end=1.0)]), plain)
    early = generate(tiny_pipe, [unit(cn, guidance_start=0.0, guidance_end=0.1)])  # the first two steps only
    assert not same(early, plain) and not same(early, controlled)
    late = generate(tiny_pipe, [unit(cn, guidance_start=0.5, guidance_end=1.0)])  # the last step only
    assert not same(late, plain) and not same(late, early)


def test_two_units_add_up_and_differ_from_either(tiny_pipe, cn, controlled):
    other = generate(tiny_pipe, [unit(cn, "sd1_b", image="ramp")])
    both = generate(tiny_pipe, [unit(cn), unit(cn, "sd1_b", image="ramp")])
    assert not same(both, controlled) and not same(both, other)
    assert "ControlNet 1: " in both[1][0] and "Model: cn-sd1-b [" in both[1][0]
    # A second unit at weight 0 adds nothing.
    assert same(generate(tiny_pipe, [unit(cn), unit(cn, "sd1_b", image="ramp", weight=0.0)]), controlled)


def test_control_modes_give_three_different_images(tiny_pipe, cn, controlled):
    prompt = generate(tiny_pipe, [unit(cn, control_mode="prompt")])
    control = generate(tiny_pipe, [unit(cn, control_mode="controlnet")])
    assert not same(prompt, controlled) and not same(control, controlled) and not same(prompt, control)
    assert "Control Mode: My prompt is more important" in prompt[1][0]
    assert "Control Mode: ControlNet is more important" in control[1][0]


def test_weight_and_preprocessor_and_resize_mode_change_the_image(tiny_pipe, cn, controlled):
    assert not same(generate(tiny_pipe, [unit(cn, weight=0.5)]), controlled)
    canny = generate(tiny_pipe, [unit(cn, module="canny")])
    assert not same(canny, controlled) and "Module: canny" in canny[1][0]
    assert "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0" in canny[1][0]
    assert not same(generate(tiny_pipe, [unit(cn, resize_mode="fill")]), controlled)


def test_single_file_and_folder_controlnets_give_the_same_pixels(tiny_pipe, cn, controlled):
    assert same(generate(tiny_pipe, [unit(cn, "sd1_file")]), controlled)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_take_controlnets(tiny_pipe, cn, tmp_path, mode):
    write_inputs(tmp_path, (64, 64))
    without = generate(tiny_pipe, mode=mode, files=tmp_path)
    with_cn = generate(tiny_pipe, [unit(cn)], mode=mode, files=tmp_path)
    assert not same(with_cn, without)
    assert "Denoising strength: 0.75" in with_cn[1][0] and "ControlNet 0: " in with_cn[1][0]


def test_an_inpainting_checkpoint_feeds_the_controlnet_its_latent_channels(tiny_inpaint_pipe, cn, tmp_path):
    write_inputs(tmp_path, (64, 64))
    without = generate(tiny_inpaint_pipe, mode="inpaint", files=tmp_path)
    assert not same(generate(tiny_inpaint_pipe, [unit(cn)], mode="inpaint", files=tmp_path), without)


def test_timestep_samplers_take_controlnets_too(tiny_pipe, cn):
    assert not same(generate(tiny_pipe, [unit(cn)], sampler="DDIM"), generate(tiny_pipe, sampler="DDIM"))


def test_sdxl_controlnet_with_its_added_conditioning_folder_and_file_alike(xl_pipe, cn):
    plain = generate(xl_pipe)
    folder = generate(xl_pipe, [unit(cn, "xl")])
    assert not same(folder, plain) and same(generate(xl_pipe, [unit(cn, "xl", weight=0.0)]), plain)
    assert same(generate(xl_pipe, [unit(cn, "xl_file")]), folder)
    assert not same(generate(xl_pipe, [unit(cn, "xl", control_mode="prompt")]), folder)


@pytest.mark.parametrize("which, pipe", [("xl_file", "tiny_pipe"), ("sd1_file", "xl_pipe")])
def test_a_controlnet_of_another_family_is_refused_naming_the_file(request, cn, which, pipe):
    with pytest.raises(ModelError, match=rf"--controlnet: .*{cn[which].name} is a ControlNet for .* but the model"):
        generate(request.getfixturevalue(pipe), [unit(cn, which)])


def test_unit_infotext_round_trips_through_parse_unit(cn):
    original = unit(cn, module="canny", weight=0.65, guidance_start=0.1, guidance_end=0.8,
                    control_mode="controlnet", resize_mode="fill", processor_res=384, threshold_a=50,
                    threshold_b=150)
    text = unit_infotext(original, "cn-sd1 [0123abcd]", 384)
    parsed = parse_unit(text, image=original.image)
    assert parsed == ControlUnit(**{**original.__dict__, "model": "cn-sd1 [0123abcd]", "model_by_name": True})
    # The extension's own examples: ints, old resize labels, fields it added later absent.
    old = parse_unit("Module: none, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1, "
                     "Resize Mode: Inner Fit (Scale to Fit), Low Vram: False, Guidance Start: 0, Guidance End: 1, "
                     "Pixel Perfect: True, Control Mode: My prompt is more important")
    assert (old.model, old.resize_mode, old.control_mode, old.pixel_perfect) == (
        "control_v11f1p_sd15_depth [cfd03158]", "crop", "prompt", True)


def test_only_masked_inpainting_crops_the_control_image_like_the_input(cn, tmp_path):
    from types import SimpleNamespace

    from sdcli.controlnet.plan import ControlPlan, LoadedControl

    quarters = Image.new("RGB", (64, 64), "black")
    quarters.paste((255, 255, 255), (32, 32, 64, 64))  # white bottom-right quarter
    plan = ControlPlan((unit(cn),), (SimpleNamespace(title="t [00000000]"),), (quarters,), (None,))
    control = LoadedControl(plan, (None,))
    whole, _ = control.prepare((64, 64), 4)
    cropped, _ = control.prepare((64, 64), 4, crop=((64, 64), (32, 32, 64, 64)))
    assert whole.units[0].hint.mean().item() == pytest.approx(0.25, abs=0.01)
    assert cropped.units[0].hint.min().item() == 1.0  # the crop holds only the white quarter
