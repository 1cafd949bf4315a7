"""Per-family `steps` defaults (Family.defaults "steps"): an unset --steps takes the family's value (Z-Image 8,
Flux.2 klein 4; SD 20) in the one-shot command, a prompt file and the WebUI API; an explicit value always wins; the
infotext writes the steps that ran, and the pixels are those of the same steps given by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import read_infotext

RUN = ("-W", "32", "-H", "32", "--seed", "3")


def _run(cli, out, *args, command="txt2img"):
    result = cli(command, *RUN, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    (png,) = sorted(p for p in out.rglob("*.png") if "grid" not in p.name)
    return read_infotext(png), np.asarray(Image.open(png), dtype=np.int16)


@pytest.mark.parametrize(("arch", "steps"), [("zimage", "8"), ("flux2-klein", "4")])
def test_unset_steps_take_the_family_default(cli, tiny_family, tmp_path, arch, steps):
    model = ("-m", tiny_family(arch))
    text, pixels = _run(cli, tmp_path / "default", *model, "a cat")
    assert f"Steps: {steps}," in text
    same_text, same = _run(cli, tmp_path / "given", *model, "--steps", steps, "a cat")
    assert np.array_equal(pixels, same) and same_text == text
    two_text, two = _run(cli, tmp_path / "two", *model, "--steps", "2", "a cat")
    assert "Steps: 2," in two_text and not np.array_equal(pixels, two)  # an explicit value wins


def test_sd_keeps_the_webui_20(cli, tiny_model, tmp_path):
    text, _ = _run(cli, tmp_path / "sd", "-m", tiny_model, "--sampler", "Euler", "a cat")
    assert "Steps: 20," in text


def test_img2img_takes_the_family_default(cli, tiny_family, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    text, pixels = _run(cli, tmp_path / "i", "-m", tiny_family("zimage"), "-i", image, "--strength", "0.5", "a cat",
                        command="img2img")
    assert "Steps: 8," in text
    _, same = _run(cli, tmp_path / "j", "-m", tiny_family("zimage"), "-i", image, "--strength", "0.5", "--steps", "8",
                   "a cat", command="img2img")
    assert np.array_equal(pixels, same)


def test_prompt_file_lines_take_their_family_default(cli, tiny_family, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n--steps 3 --prompt \"a dog\"\n", encoding="utf-8")
    out = tmp_path / "batch"
    result = cli("batch", prompts, "-m", tiny_family("zimage"), *RUN, "-o", out)
    assert result.exit_code == 0, result.stderr
    texts = sorted(read_infotext(p) for p in out.rglob("*.png"))
    assert [("Steps: 8," in t, "Steps: 3," in t) for t in texts] == [(True, False), (False, True)]  # a cat, a dog


def test_webui_api_takes_the_family_default_else_its_50(tiny_family, tiny_family_pipe, tiny_model, tiny_pipe):
    from fastapi.testclient import TestClient

    from sdcli.models.runtime import RuntimeOptions
    from sdcli.server.app import Limits, create_app
    from sdcli.server.engine import Engine

    zimage = tiny_family("zimage")
    pipes = {zimage.resolve(): tiny_family_pipe("zimage"), tiny_model.resolve(): tiny_pipe}
    engine = Engine.from_specs([str(zimage), str(tiny_model)], RuntimeOptions(), load=lambda ref, plan: pipes[ref.path])
    client = TestClient(create_app(engine, limits=Limits(max_body_bytes=1 << 20, max_pixels=64 * 64, max_images=4)))
    payload = {"prompt": "a cat", "width": 32, "height": 32, "seed": 3}
    for model, steps in ((engine.models[0], 8), (engine.models[1], 50)):
        engine.current = model
        answer = client.post("/sdapi/v1/txt2img", json=payload)
        assert answer.status_code == 200, answer.text
        import json

        info = json.loads(answer.json()["info"])
        assert info["steps"] == steps and f"Steps: {steps}," in info["infotexts"][0]
    engine.current = engine.models[0]
    answer = client.post("/sdapi/v1/txt2img", json={**payload, "steps": 3})
    assert "Steps: 3," in answer.json()["info"]
