"""ControlNet units from flags (core.control) and the built-in preprocessors (core.preprocess). No models."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdcli.controlnet.preprocess import _gaussian_kernel, canny, control_hint, detect, fit, processor_resolution
from sdcli.controlnet.units import ControlUnit, canonical_module, units_from_flags
from sdcli.errors import UsageError


def disc(size=(96, 64), fill="black", background="white"):
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).ellipse((20, 8, 70, 56), fill=fill)
    return image


def unit(**fields):
    return ControlUnit(model="m", image="i", **fields)


def test_canny_finds_the_outline_and_its_thresholds_matter():
    edges = canny(np.asarray(disc()), 100, 200)
    assert set(np.unique(edges)) == {0, 255}
    ys, xs = np.nonzero(edges)
    # Every edge pixel lies on the disc's outline (centre 45, 32; radii 25 x 24), none inside or outside.
    radius = np.hypot((xs - 45) / 25, (ys - 32) / 24)
    assert np.all(np.abs(radius - 1) < 0.12) and len(xs) > 100
    faint = np.asarray(disc(fill=(110, 110, 110), background=(125, 125, 125)))  # gradient 4 x 15 = 60
    assert canny(faint, 100, 200).max() == 0 and canny(faint, 20, 50).max() == 255


def test_gaussian_kernel_follows_opencv_size_rule():
    kernel = _gaussian_kernel(6.0)
    assert len(kernel) == 49 and abs(kernel.sum() - 1) < 1e-12 and np.allclose(kernel, kernel[::-1])
    assert len(_gaussian_kernel(0.5)) == 5


def test_lineart_scribble_and_invert_maps():
    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).line((8, 32, 56, 32), fill="black", width=3)
    lineart = np.asarray(detect(unit(module="lineart_standard"), drawing, 64))[..., 0]
    assert lineart[31:34, 12:52].min() > 100 and lineart[:20].max() < 20  # bright line, dark background
    scribble = np.asarray(detect(unit(module="scribble_xdog"), drawing, 64))[..., 0]
    assert set(np.unique(scribble)) == {0, 255} and scribble[31:34, 12:52].mean() > 200 and scribble[:20].max() == 0
    inverted = np.asarray(detect(unit(module="invert"), drawing, 64))
    assert np.array_equal(inverted, 255 - np.asarray(drawing))
    assert detect(unit(module="none"), drawing, 64) is drawing


def test_resize_modes_fit_the_map_to_the_generation_size():
    image = disc()  # 96x64
    assert fit(image, (64, 64), "just").size == (64, 64)
    cropped = np.asarray(fit(image, (64, 64), "crop"))
    filled = np.asarray(fit(image, (64, 64), "fill"))
    assert cropped[0, 0].tolist() == [255, 255, 255] and cropped[32, 32].tolist() == [0, 0, 0]
    assert filled[:10].max() == 0 and filled[-10:].max() == 0 and filled[32, 5].tolist() == [255, 255, 255]


def test_processor_resolution_and_pixel_perfect():
    assert processor_resolution(unit(processor_res=384), (96, 64), (64, 64)) == 384
    assert processor_resolution(unit(pixel_perfect=True), (96, 64), (64, 64)) == 64
    assert processor_resolution(unit(pixel_perfect=True, resize_mode="fill"), (96, 64), (64, 64)) == 43
    hint, res = control_hint(unit(module="canny"), disc(), (64, 48))
    # A one-pixel edge map at 512 px scaled to 64 stays an edge map (the extension's Otsu re-threshold).
    assert hint.shape == (48, 64, 3) and hint.dtype == np.float32 and set(np.unique(hint)) == {0.0, 1.0}
    assert res == 512


@pytest.mark.parametrize("name, canonical", [("canny", "canny"), ("Lineart", "lineart_standard"),
                                             ("scribble", "scribble_xdog"), ("depth", "none"),
                                             ("invert (from white bg & black line)", "invert")])
def test_preprocessor_names(name, canonical):
    assert canonical_module(name) == canonical


def test_preprocessors_that_need_weights_or_do_not_exist_are_refused():
    with pytest.raises(UsageError, match=r"--preprocessor: openpose needs the OpenPose body model .* "
                                         r"--preprocessor none"):
        canonical_module("openpose")
    with pytest.raises(UsageError, match=r"--preprocessor: depth_midas needs the MiDaS depth model"):
        canonical_module("depth_midas")
    with pytest.raises(UsageError, match=r"--preprocessor: unknown preprocessor 'blur'; built in: none, canny"):
        canonical_module("blur")


def flags(**values):
    return {"controlnet": ["a", "b"], "control_image": ["x.png", "y.png"], **values}


def test_per_unit_flags_apply_to_all_units_or_one_each():
    units = units_from_flags(flags(control_weight=[0.5], preprocessor=["canny", "none"],
                                   control_mode=["Prompt", "controlnet"], control_end=[0.5, 0.9]))
    assert [u.weight for u in units] == [0.5, 0.5] and [u.module for u in units] == ["canny", "none"]
    assert [u.control_mode for u in units] == ["prompt", "controlnet"]
    assert [u.guidance_end for u in units] == [0.5, 0.9]
    assert units_from_flags({}) == ()


@pytest.mark.parametrize("values, message", [
    ({"control_image": ["x.png"]}, r"--control-image: 1 given for 2 --controlnet"),
    ({"control_weight": [1, 1, 1]}, r"--control-weight: 3 values for 2 --controlnet"),
    ({"control_weight": [2.5]}, r"--control-weight: 2.5 \(unit 0\) is out of range; use 0 to 2"),
    ({"control_start": [0.6], "control_end": [0.4]}, r"--control-start: 0.6 is not below --control-end 0.4"),
    ({"control_mode": ["loud"]}, r"--control-mode: unknown value 'loud'; choose from balanced, prompt, controlnet"),
    ({"control_resize": ["stretch"]}, r"--control-resize: unknown value 'stretch'"),
    ({"control_res": [16]}, r"--control-res: 16 \(unit 0\) is out of range; use 64 to 2048"),
    ({"control_threshold_a": [10]}, r"--control-threshold-a: the none preprocessor has no such threshold"),
    ({"preprocessor": ["canny"], "control_threshold_b": [300]}, r"--control-threshold-b: 300 \(unit 0\)"),
])
def test_bad_unit_flags_are_refused_naming_the_flag(values, message):
    with pytest.raises(UsageError, match=message):
        units_from_flags(flags(**values))


def test_unit_flags_without_controlnet_are_refused():
    with pytest.raises(UsageError, match="--control-image: needs --controlnet MODEL"):
        units_from_flags({"control_image": ["x.png", "y.png"]})
    with pytest.raises(UsageError, match="--preprocessor: needs --controlnet MODEL"):
        units_from_flags({"preprocessor": ["canny"]})


def test_one_control_image_alone_is_a_unit_without_a_model():
    """A control model's own input (Flux Control): the per-unit flags apply to it."""
    (unit,) = units_from_flags({"control_image": ["x.png"], "preprocessor": ["canny"]})
    assert (unit.model, unit.image, unit.module) == ("", "x.png", "canny")
