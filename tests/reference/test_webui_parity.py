"""sdcli's pixels vs an independent reference of the WebUI's pipeline (tests/reference/*_ref.py).

The goal of issue 12: with RNG source CPU and emphasis Original, the same settings give
the WebUI's image within 2 levels of 255, per sampler and schedule type. Each case prints
its measured difference (pytest -s, or `make bench` for the whole matrix).
"""

from __future__ import annotations

import pytest
import torch

from sdcli.sampling.samplers import WEBUI_SCHEDULE_LABELS
from tests.reference.parity import max_difference
from tests.reference.pipeline_ref import SAMPLERS, TIMESTEP_SAMPLERS

pytestmark = [pytest.mark.filterwarnings("ignore:Should have:UserWarning"),  # torchsde, as in the WebUI
              pytest.mark.filterwarnings("ignore:To copy construct:UserWarning")]  # the reference's DPM fast
TOLERANCE = 2  # levels of 255
PROMPT = "a (red:1.3) cat, [blurry] dog, (sunset:0.8), masterpiece"
NEGATIVE = "lowres, (ugly:1.2)"


def check(pipe, prompt=PROMPT, **settings):
    difference = max_difference(pipe, prompt, negative=settings.pop("negative", NEGATIVE), **settings)
    print(f"max difference {difference}: {settings}")
    assert difference <= TOLERANCE


@pytest.mark.parametrize("sampler", [*SAMPLERS, *TIMESTEP_SAMPLERS])
def test_every_sampler_with_its_automatic_schedule(tiny_pipe, sampler, single_thread):
    check(tiny_pipe, sampler=sampler)


@pytest.mark.parametrize("settings", [{"sampler": "DDIM", "eta": 0.6, "steps": 6}, {"sampler": "PLMS", "steps": 7},
                                      {"sampler": "DDIM CFG++", "steps": 5, "cfg": 3.0},
                                      {"sampler": "DDIM CFG++", "eta": 0.4, "steps": 8,
                                       "prompt": "a [cat:dog:3] AND sea"}],
                         ids=["ddim-eta", "plms-7", "ddim-cfgpp-5", "ddim-cfgpp-eta-edit-and"])
def test_timestep_samplers(tiny_pipe, settings, single_thread):
    image, mask = _inputs()
    check(tiny_pipe, **settings)
    check(tiny_pipe, init_image=image, denoising_strength=0.7, **settings)
    check(tiny_pipe, init_image=image, mask_image=mask, inpainting_fill="latent nothing", **settings)


@pytest.mark.parametrize("schedule", list(WEBUI_SCHEDULE_LABELS.values()))  # the WebUI's own, not ComfyUI's beta
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE"])
def test_every_schedule_type(tiny_pipe, sampler, schedule, single_thread):
    check(tiny_pipe, sampler=sampler, scheduler=schedule)


@pytest.mark.parametrize("sampler,steps", [("DPM2", 3), ("Heun", 7), ("LMS", 6), ("DPM++ 3M SDE", 5),
                                           ("Restart", 20), ("Restart", 36), ("DPM fast", 9), ("DPM fast", 10),
                                           ("DPM adaptive", 2)])
def test_other_step_counts(tiny_pipe, sampler, steps, single_thread):
    check(tiny_pipe, sampler=sampler, steps=steps)


@pytest.mark.parametrize("settings", [
    {"eta": 0.5, "sampler": "Euler a"},
    {"ensd": 31337, "sampler": "DPM2 a"},
    {"s_churn": 1.0, "s_tmin": 0.5, "s_noise": 1.003, "sampler": "Euler"},
    {"sigma_min": 0.1, "sigma_max": 10.0, "sampler": "DPM++ 2M", "scheduler": "Karras"},
    {"rng": "NV", "sampler": "Euler a"},
    {"subseed": 77, "subseed_strength": 0.3, "sampler": "Euler a"},
    {"batch_size": 2, "sampler": "DPM++ SDE", "seed": 5},
    {"cfg": 1.0, "sampler": "Euler"},
], ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_webui_options_that_change_pixels(tiny_pipe, settings, single_thread):
    check(tiny_pipe, **settings)


@pytest.mark.parametrize("prompt,settings", [
    ("a cat BREAK a dog, (sunset:1.4)", {}),
    (", ".join(f"word{i} (thing{i}:1.1)" for i in range(14)), {}),  # several chunks, comma backtracking
    (PROMPT, {"clip_skip": 2}),
    (PROMPT, {"emphasis": "No norm"}),
    (PROMPT, {"emphasis": "None"}),
    ("a cat", {"negative": "x " * 60}),  # prompt and negative of different chunk counts
    ("a [cat:dog:2] in a field", {}),
    ("a [red|blue|green] bird", {}),
    ("a cat :1.2 AND a (dog:1.3) :0.6 AND sunset", {}),
    ("[" + "long words, " * 10 + "::2] cat", {"negative": "[blurry:ugly, bad:0.5]"}),  # chunk count changes
    ("a [cat:dog:3] and [a|b]", {"sampler": "DPM2"}),  # second order: the schedule spans 2 x steps
    ("a [cat:dog:0.4] AND [fox::2] :0.7", {"sampler": "Heun", "steps": 5}),
], ids=["break", "long", "clip-skip-2", "no-norm", "none", "unequal-chunks", "editing", "alternation", "and",
        "editing-chunks", "second-order", "editing-and-heun"])
def test_conditioning(tiny_pipe, prompt, settings, single_thread):
    check(tiny_pipe, prompt, cfg=12.0, **{"sampler": "DPM++ 2M", **settings})


def test_img2img(tiny_pipe, single_thread):
    from PIL import Image

    image = Image.radial_gradient("L").convert("RGB").resize((32, 32))
    check(tiny_pipe, sampler="Euler a", init_image=image, denoising_strength=0.6, steps=5)
    check(tiny_pipe, sampler="DPM++ SDE", init_image=image, denoising_strength=0.75, steps=4)
    check(tiny_pipe, sampler="DPM fast", init_image=image, denoising_strength=0.6, steps=8)


# Conditioning is compared exactly (not through pixels, which a tiny model barely moves).
PROMPTS = [
    "", "a cat", "(a cat:1.5) on a [mat]", "((nested)) [[down]] (x:0.5)", "a (cat", "a cat)", "[a (b] c)",
    "\\(literal\\) \\\\ lone \\ slash", "a BREAK b", "BREAK at start", "at end BREAK", "a,BREAK,b", "(in BREAK it)",
    "(x:1.2.3)", "a: b :c", "x " * 80, ", ".join(f"item{i}" for i in range(40)), "(" + "long words " * 40 + ":1.3)",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_prompt_parser_is_the_webuis(prompt):
    from sdcli.conditioning.prompts import parse_attention
    from tests.reference.webui_ref import parse_prompt_attention

    try:
        expected = [(t, float(w)) for t, w in parse_prompt_attention(prompt)]
    except ValueError:  # the WebUI fails on a malformed weight too
        with pytest.raises(ValueError):
            parse_attention(prompt)
        return
    assert parse_attention(prompt) == expected


SCHEDULED = ["a [cat:dog:2] x", "[a|b|c] d", "a [cat:dog:0.5]", "[cat::3] [:hat:2]", "[[a:b:1]:c:3]",
             "(a:1.2) [b:c:1] \\[x\\]", "broken [a:b", "a [b:c:d:2]", "[a:b:10]", "[a:b: 2 ]", "[a|]", "plain",
             "[a:b:0.99]", "[a:b:-1]", "a: b", "[(x:1.2):y:2]"]


@pytest.mark.parametrize(("prompt", "steps"), [(p, s) for p in SCHEDULED for s in (1, 4, 9)]
                         + [(p, 4) for p in PROMPTS])  # the attention corpus: bracket-free ones skip the parser
def test_prompt_schedules_are_the_webuis(prompt, steps):
    from sdcli.conditioning.schedule import prompt_schedule
    from tests.reference.webui_ref import get_learned_conditioning_prompt_schedules

    expected = [(end, text) for end, text in get_learned_conditioning_prompt_schedules([prompt], steps)[0]]
    assert prompt_schedule(prompt, steps) == expected


@pytest.mark.parametrize("prompt", ["a AND b", "a :1.5 AND b:0.2", "ANDROID AND x", "x:2", "a AND", "AND"])
def test_and_parts_are_the_webuis(prompt):
    from sdcli.conditioning.schedule import and_parts
    from tests.reference.webui_ref import get_multicond_prompt_list

    indexes, flat, _ = get_multicond_prompt_list([prompt])
    assert and_parts(prompt) == [(flat[i], w) for i, w in indexes[0]]


@pytest.mark.parametrize("emphasis", ["Original", "No norm", "None"])
@pytest.mark.parametrize("clip_skip", [1, 3])
def test_embeddings_are_the_webuis(tiny_pipe, emphasis, clip_skip):
    from sdcli.conditioning.encoding import ClipTextEncoder
    from tests.reference.webui_ref import CLIPWrapper

    ours = ClipTextEncoder(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, clip_skip, emphasis.lower())
    theirs = CLIPWrapper(tiny_pipe.pipe.tokenizer, tiny_pipe.pipe.text_encoder, clip_skip, emphasis)
    for prompt in PROMPTS:
        if "1.2.3" in prompt:
            continue
        expected = theirs([prompt])
        assert ours(prompt).shape == expected.shape, prompt
        torch.testing.assert_close(ours(prompt), expected, rtol=0, atol=1e-6, msg=prompt)


def _inputs():
    from PIL import Image, ImageDraw, ImageFilter

    image = Image.radial_gradient("L").convert("RGB").resize((32, 32))
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((8, 6, 25, 22), fill=255)
    return image, mask.filter(ImageFilter.GaussianBlur(3))


@pytest.mark.parametrize("fill", ["original", "latent noise", "latent nothing"])
def test_inpaint(tiny_pipe, fill, single_thread):
    image, mask = _inputs()
    check(tiny_pipe, sampler="Euler a", init_image=image, mask_image=mask, inpainting_fill=fill,
          denoising_strength=0.6, steps=5)


def test_inpaint_with_a_9_channel_checkpoint(tiny_inpaint_pipe, single_thread):
    image, mask = _inputs()
    check(tiny_inpaint_pipe, sampler="DPM++ 2M SDE", init_image=image, mask_image=mask, denoising_strength=1.0,
          steps=4)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DPM++ SDE", "DDIM", "DDIM CFG++", "PLMS", "DPM2"])
def test_sd2_v_prediction(tiny_sd2_pipe, sampler, single_thread):
    check(tiny_sd2_pipe, sampler=sampler, clip_skip=2)  # the WebUI ignores CLIP skip on SD2


def test_inpaint_fill_is_the_webuis():
    import numpy as np

    from sdcli.io.images import webui_fill
    from tests.reference.webui_ref import masking_fill

    image, mask = _inputs()
    ours, theirs = np.asarray(webui_fill(image, mask)), np.asarray(masking_fill(image, mask))
    assert np.array_equal(ours, theirs) and not np.array_equal(ours, np.asarray(image))


@pytest.mark.parametrize("schedule", ["Automatic", "Karras", "SGM Uniform", "Simple", "Normal", "DDIM", "Beta"])
@pytest.mark.parametrize("steps", [1, 4, 7])
def test_lcm(tiny_pipe, schedule, steps, single_thread):
    """The WebUI's LCM (its own 50-timestep model wrap), every schedule type the WebUI offers it."""
    check(tiny_pipe, sampler="LCM", scheduler=schedule, steps=steps, cfg=1.5)


def test_lcm_img2img_editing_and_sd2(tiny_pipe, tiny_sd2_pipe, single_thread):
    image, mask = _inputs()
    check(tiny_pipe, "a [cat:dog:2] AND sea", sampler="LCM", init_image=image, denoising_strength=0.6, steps=6)
    check(tiny_pipe, sampler="LCM", init_image=image, mask_image=mask, denoising_strength=0.8, steps=5)
    check(tiny_sd2_pipe, sampler="LCM", steps=5)  # the WebUI reads a v model's output as eps for LCM too


@pytest.mark.parametrize("steps", [3, 4, 6, 9])
def test_unipc(tiny_pipe, steps, single_thread):
    """The WebUI's UniPC with its default options: bh1, order 3, time-uniform, lower order final."""
    check(tiny_pipe, sampler="UniPC", steps=steps)


def test_unipc_img2img_inpaint_editing_and_sd2(tiny_pipe, tiny_sd2_pipe, single_thread):
    image, mask = _inputs()
    check(tiny_pipe, "a [cat:dog:2] AND sea", sampler="UniPC", init_image=image, denoising_strength=0.7, steps=8)
    check(tiny_pipe, sampler="UniPC", init_image=image, mask_image=mask, inpainting_fill="latent nothing",
          denoising_strength=0.8, steps=6)
    check(tiny_sd2_pipe, sampler="UniPC", steps=5)
