"""Hires fix (core.hires): target sizes, infotext keys, reading them back, and the pass on tiny models."""

from dataclasses import replace

import numpy as np
import pytest

from sdcli.errors import UsageError
from sdcli.io.metadata import parse_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from sdcli.request.hires import HiresSettings, final_size, hires_from_infotext, target_size

BASE = GenerationRequest("a cat", steps=3, seed=7, width=32, height=32)


def generate(pipe, request):
    [item] = list(run(request, pipe, validate(request), model_name="tiny", model_hash="0123456789"))
    return item


def pixels(item):
    return np.asarray(item.image, dtype=np.int16)


@pytest.mark.parametrize(("size", "settings", "expected"), [
    ((512, 512), HiresSettings(scale=2), (1024, 1024, 0, 0)),
    ((512, 768), HiresSettings(scale=1.5), (768, 1152, 0, 0)),
    ((512, 512), HiresSettings(width=1024), (1024, 1024, 0, 0)),  # one side 0: the aspect decides
    ((512, 768), HiresSettings(height=1024), (682, 1024, 0, 0)),
    ((512, 512), HiresSettings(width=1024, height=768), (1024, 1024, 0, 32)),  # cropped in latent rows
    ((768, 512), HiresSettings(width=768, height=768), (1152, 768, 48, 0)),
])
def test_target_size_is_the_webuis(size, settings, expected):
    assert target_size(*size, settings) == expected


def test_final_size_crops_to_the_hires_resize():
    assert final_size(512, 512, HiresSettings(width=1024, height=768)) == (1024, 768)
    assert final_size(520, 520, HiresSettings(scale=1.5)) == (776, 776)  # 780 px is not a whole latent


def test_hires_pass_makes_the_target_size_and_is_deterministic(tiny_pipe):
    request = replace(BASE, hires=HiresSettings(scale=2, steps=2))
    first, again = generate(tiny_pipe, request), generate(tiny_pipe, request)
    assert first.image.size == (64, 64) and (first.width, first.height) == (32, 32)  # Size: the first pass
    assert np.array_equal(pixels(first), pixels(again))
    cropped = generate(tiny_pipe, replace(BASE, hires=HiresSettings(width=64, height=48, steps=2)))
    assert cropped.image.size == (64, 48)
    # In a batch, image i is the image of seed + i made alone (both passes draw per-image noise). Within a
    # level: oneDNN's AVX-512 convolutions block a batch of 2 differently from a batch of 1.
    batch = list(run(replace(request, batch_size=2), tiny_pipe, validate(request), model_name="m", model_hash="h"))
    alone = generate(tiny_pipe, replace(request, seed=8))
    assert np.abs(pixels(batch[0]) - pixels(first)).max() <= 1 and np.abs(pixels(batch[1]) - pixels(alone)).max() <= 1
    assert np.abs(pixels(batch[0]) - pixels(alone)).max() > 10  # the seeds differ: the check can fail


def test_upscalers_steps_and_settings_change_the_pixels(tiny_pipe):
    def image(**settings):
        return pixels(generate(tiny_pipe, replace(BASE, hires=HiresSettings(**{"steps": 2, **settings}))))

    latent = image()
    assert not np.array_equal(latent, image(upscaler="Lanczos"))
    assert not np.array_equal(latent, image(upscaler="Latent (nearest-exact)"))
    assert not np.array_equal(image(upscaler="Lanczos"), image(upscaler="Nearest"))
    assert not np.array_equal(latent, image(denoise=0.4))
    assert not np.array_equal(latent, image(prompt="a dog"))
    assert not np.array_equal(latent, image(sampler="Euler a"))
    # Hires steps 0 = the first pass's steps (3); 2 differs.
    assert np.array_equal(image(steps=0), image(steps=3))
    assert not np.array_equal(image(steps=0), latent)


def test_hires_keys_are_the_webuis_and_written_when_it_writes_them(tiny_pipe):
    plain = generate(tiny_pipe, replace(BASE, hires=HiresSettings()))
    _, _, params = parse_infotext(plain.infotext)
    assert {k: v for k, v in params.items() if k.startswith("Hires") or k == "Denoising strength"} == {
        "Denoising strength": "0.7", "Hires upscale": "2", "Hires upscaler": "Latent"}
    assert params["Size"] == "32x32"
    full = generate(tiny_pipe, replace(BASE, negative_prompt="blur", hires=HiresSettings(
        width=64, height=48, steps=2, denoise=0.55, upscaler="Lanczos", prompt="a cat, detailed",
        negative_prompt="noise", sampler="Euler a", cfg_scale=5)))
    line = full.infotext.splitlines()[-1]
    assert ("Denoising strength: 0.55, RNG: CPU, Hires sampler: Euler a, Hires prompt: \"a cat, detailed\", "
            "Hires negative prompt: noise, Hires schedule type: Uniform, Hires CFG Scale: 5, Hires resize: 64x48, "
            "Hires steps: 2, Hires upscaler: Lanczos") in line
    assert "Hires upscale:" not in line
    same = generate(tiny_pipe, replace(BASE, hires=HiresSettings(prompt="a cat", sampler="DPM++ 2M", cfg_scale=7)))
    assert "Hires prompt" not in same.infotext and "Hires sampler" not in same.infotext
    assert "Hires CFG Scale" not in same.infotext


def test_hires_settings_round_trip_through_the_infotext(tiny_pipe):
    settings = HiresSettings(width=64, height=0, steps=2, denoise=0.55, upscaler="Latent (bicubic)",
                             prompt="a cat, detailed", negative_prompt="noise", sampler="Euler", cfg_scale=5.5)
    item = generate(tiny_pipe, replace(BASE, hires=settings))
    back = hires_from_infotext(parse_infotext(item.infotext)[2], "img.png")
    assert back == replace(settings, schedule="uniform")  # Euler's Uniform differs from DPM++ 2M's Karras: written
    assert hires_from_infotext({"Steps": "2", "Denoising strength": "0.7"}, "x") is None  # img2img, not hires
    webui = hires_from_infotext({"Denoising strength": "0.5", "Hires upscale": "1.5",
                                 "Hires sampler": "Use same sampler"}, "x")
    assert webui == HiresSettings(scale=1.5, denoise=0.5, upscaler="Latent")
    with pytest.raises(UsageError, match="x: bad hires value"):
        hires_from_infotext({"Denoising strength": "0.5", "Hires resize": "big"}, "x")


@pytest.mark.parametrize(("settings", "message"), [
    (HiresSettings(scale=9), "--hires-scale: 9 is out of range"),
    (HiresSettings(width=9000), "--hires-size: width 9000 is out of range"),
    (HiresSettings(denoise=-0.1), "--hires-denoise: -0.1 is out of range"),
    (HiresSettings(steps=-1), "--hires-steps: -1 is out of range"),
    (HiresSettings(sampler="Eulerish"), "--hires-sampler: unknown sampler 'Eulerish'"),
    (HiresSettings(schedule="weird"), "--hires-schedule: unknown schedule type"),
    (HiresSettings(cfg_scale=-1), "--hires-cfg: -1 is out of range"),
    (HiresSettings(prompt="<lora:x:1> a cat"), "--hires-prompt: its <lora:...> tags differ"),
])
def test_bad_hires_settings_name_their_flag(settings, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate(replace(BASE, hires=settings))


def test_hires_is_txt2img_only_and_refuses_prompt_editing(tiny_pipe):
    from sdcli.request.generation import ImageInput

    with pytest.raises(UsageError, match="--hires: hires fix is a second pass of txt2img"):
        validate(replace(BASE, mode="img2img", init=ImageInput("x.png"), hires=HiresSettings()))
    with pytest.raises(UsageError, match="prompt editing"):
        generate(tiny_pipe, replace(BASE, prompt="[a cat:a dog:2]", hires=HiresSettings()))


def test_sdxl_runs_both_passes(tiny_xl):
    from tests.conftest import _load_on_cpu

    pipe = _load_on_cpu(tiny_xl["base"])
    request = replace(BASE, width=64, height=64, steps=2, hires=HiresSettings(scale=1.5, steps=2))
    item, again = generate(pipe, request), generate(pipe, request)
    assert item.image.size == (96, 96) and np.array_equal(pixels(item), pixels(again))
    lanczos = generate(pipe, replace(request, hires=HiresSettings(scale=1.5, steps=2, upscaler="Lanczos")))
    assert not np.array_equal(pixels(item), pixels(lanczos))
