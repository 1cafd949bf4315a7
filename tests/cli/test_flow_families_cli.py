"""The flow families (tests/flow_families.py: Flux.2 klein, Z-Image, Qwen-Image, Chroma) from the command line
on their tiny models: the defaults their infotext records (Euler, the family's schedule and CFG), the negative prompt
counting above CFG 1 and never run at CFG 1, shift, img2img, inpaint, hires, prompt files, X/Y/Z, replay,
refusals naming the flag and the family, single files refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.flow_families import FLOW_FAMILIES, FlowFamily

RUN = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3")
CLI_FAMILIES = [f for f in FLOW_FAMILIES.values() if f.refusals]


def _families(*, having: str | None = None) -> list:
    """The CLI families as pytest params (id: the key), those whose `having` fact is set."""
    return [pytest.param(f, id=f.key) for f in CLI_FAMILIES if having is None or getattr(f, having)]


@pytest.fixture
def model(request, tiny_family) -> tuple[str, object]:
    """("-m", the tiny folder) of the test's `family`."""
    return ("-m", tiny_family(request.getfixturevalue("family").arch))


def _png(out):
    (png,) = out.glob("*.png")
    return png


def _pixels(cli, tmp_path, name, *args, command="txt2img"):
    out = tmp_path / name
    result = cli(command, *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    return np.asarray(Image.open(_png(out)), dtype=np.int16)


@pytest.mark.parametrize("family", _families())
def test_defaults_cfg_and_negative(cli, family: FlowFamily, model, tmp_path):
    cfg = family.cfg
    base = _pixels(cli, tmp_path, "a", *model, "-n", "dog", "a cat")
    infotext = Image.open(_png(tmp_path / "a")).text["parameters"]
    assert "Sampler: Euler" in infotext and f"Schedule type: {family.schedule}," in infotext
    assert f"CFG scale: {cfg}," in infotext
    same = ("--sampler", "Euler", "--schedule", family.schedule.lower(), "--cfg-scale", cfg, "-n", "dog", "a cat")
    assert np.array_equal(base, _pixels(cli, tmp_path, "b", *model, *same))
    # The negative prompt counts above CFG 1 and is never run at CFG 1.
    one = base if cfg == "1" else _pixels(cli, tmp_path, "c", *model, "--cfg-scale", "1", "-n", "dog", "a cat")
    assert np.array_equal(one, _pixels(cli, tmp_path, "d", *model, "--cfg-scale", "1", "-n", "sky", "a cat"))
    if cfg == "1":
        assert np.array_equal(base, _pixels(cli, tmp_path, "e", *model, "a cat"))
    above = base if cfg != "1" else _pixels(cli, tmp_path, "f", *model, "--cfg-scale", "3", "-n", "dog", "a cat")
    assert not np.array_equal(one, above)
    assert not np.array_equal(above, _pixels(cli, tmp_path, "g", *model, "--cfg-scale", "3" if cfg == "1" else cfg,
                                             "-n", "sky", "a cat"))
    if family.shift:
        assert not np.array_equal(base, _pixels(cli, tmp_path, "h", *model, "--shift", family.shift, "-n", "dog",
                                                "a cat"))
    assert not np.array_equal(base, _pixels(cli, tmp_path, "i", *model, "-n", "dog", "a dog"))


@pytest.mark.parametrize("family", _families())
def test_img2img_inpaint_and_hires(cli, family: FlowFamily, model, tmp_path):
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(mask)
    source = np.asarray(Image.open(image), dtype=np.int16)
    low = _pixels(cli, tmp_path, "i", *model, "-i", image, "--strength", "0.3", "a cat", command="img2img")
    high = _pixels(cli, tmp_path, "j", *model, "-i", image, "--strength", "0.9", "a cat", command="img2img")
    assert not np.array_equal(low, high)
    assert np.array_equal(low, _pixels(cli, tmp_path, "l", *model, "-i", image, "--strength", "0.3", "a cat",
                                       command="img2img"))
    out = _pixels(cli, tmp_path, "k", *model, "-i", image, "--mask", mask, "a cat", command="inpaint")
    assert np.abs(out[:2, :2] - source[:2, :2]).max() <= 2  # kept
    assert np.abs(out[12:20, 12:20] - source[12:20, 12:20]).mean() > 10  # repainted
    hires = _pixels(cli, tmp_path, "h", *model, "--hires", *family.hires, "a cat")
    assert hires.shape == (64, 64, 3) and "Hires" in Image.open(_png(tmp_path / "h")).text["parameters"]


@pytest.mark.parametrize("family", _families(having="xyz_shifts"))
def test_prompt_file_xyz_and_replay(cli, family: FlowFamily, model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n--prompt \"a dog\" --cfg_scale 2\n")
    result = cli("batch", prompts, *model, *RUN, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "b").glob("*.png"))) == 2
    result = cli("xyz", "a cat", *model, *RUN, "-o", tmp_path / "x", "--json",
                 "--x", "Sampler: Euler, DPM++ 2M", "--y", f"Shift: {family.xyz_shifts}")
    assert result.exit_code == 0, result.stderr
    items = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len([i for i in items if i.get("type") == "item"]) == 4
    first = _pixels(cli, tmp_path, "r", *model, "--cfg-scale", "2", "-n", "dog", "a cat")
    result = cli("replay", _png(tmp_path / "r"), *model, "-o", tmp_path / "r2")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(first, np.asarray(Image.open(_png(tmp_path / "r2")), dtype=np.int16))


REFUSALS = [pytest.param(f, args, message, id=f"{f.key}-{args[0] if args[0].startswith('--') else 'emphasis'}")
            for f in CLI_FAMILIES for args, message in f.refusals]


@pytest.mark.parametrize("family,args,message", REFUSALS)
def test_refusals_name_the_flag(cli, family: FlowFamily, model, tmp_path, args, message):
    result = cli("txt2img", *model, *RUN, "-o", tmp_path / "o", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))


@pytest.mark.parametrize("family", _families())
def test_a_lone_control_image_is_refused_naming_control_image(cli, family: FlowFamily, model, tmp_path):
    """--control-image without --controlnet is a control model's input: refused under that flag on every flow
    family without one (Flux.2 said --controlnet), as on Flux.1 Kontext and Qwen-Image."""
    image = tmp_path / "ctl.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    result = cli("txt2img", *model, *RUN, "-o", tmp_path / "o", "--control-image", image, "a cat")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: --control-image: a ") and "takes no control image without --controlnet" \
        in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("family", _families(having="single_file"))
def test_a_single_file_is_detected_and_refused_in_one_line(cli, family: FlowFamily, tmp_path):
    """Transformer files are recognised by their keys; one given alone is refused in one line naming the part it
    lacks (its text encoder; tests/cli/test_flow_files_cli.py loads them with their parts)."""
    import torch
    from safetensors.torch import save_file

    name, shapes, message = family.single_file
    path = tmp_path / name
    save_file({key: torch.zeros(shape) for key, shape in shapes.items()}, str(path))
    result = cli("txt2img", "-m", path, *RUN, "-o", tmp_path / "o", "a cat")
    assert result.exit_code in (1, 2) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("family", CLI_FAMILIES[:1], ids=lambda f: f.key)
def test_fuse_qkv_is_refused_by_name(cli, family: FlowFamily, model, tmp_path):
    """diffusers' flow pipelines have no fuse_qkv_projections: a one-line refusal, not an AttributeError."""
    result = cli("txt2img", *model, *RUN, "--fuse-qkv", "-o", tmp_path / "o", "a cat")
    assert result.exit_code == 2, result.stderr
    assert "--fuse-qkv:" in result.stderr and "AttributeError" not in result.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))
