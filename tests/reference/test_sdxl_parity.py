"""SDXL through sdcli's own loop vs the WebUI reference (tests/reference/sdxl_ref.py + pipeline_ref.py).

As test_webui_parity.py for SD1/SD2: the same settings give the WebUI's image within 2
levels of 255 (issue 12, points 1 and 4 for SDXL), and the conditioning is compared
exactly: both encoders' chunks and emphasis, the pooled vector, size/crop time ids and
the zeroed empty negative prompt.
"""

from __future__ import annotations

import pytest
import torch

from tests.reference.test_webui_parity import NEGATIVE, PROMPT, PROMPTS, TOLERANCE, _inputs, check

pytestmark = [pytest.mark.filterwarnings("ignore:Should have:UserWarning")]  # torchsde, as in the WebUI
XL = {"width": 64, "height": 64}
LONG = ", ".join(f"word{i} (thing{i}:1.1)" for i in range(14))  # 3 chunks, the first cut back at a comma


@pytest.mark.parametrize("sampler,schedule", [
    ("Euler a", "Automatic"), ("DPM++ 2M", "Karras"), ("DPM++ SDE", "Automatic"), ("DPM++ 2M SDE", "Exponential"),
    ("Heun", "SGM Uniform"), ("Euler", "Align Your Steps"), ("DPM2 a", "Automatic"), ("LMS", "Beta"),
    ("DDIM", "Automatic"), ("PLMS", "Automatic"), ("DDIM CFG++", "Automatic"), ("UniPC", "Automatic"),
    ("LCM", "Karras"), ("Restart", "Automatic"),
])
def test_samplers_and_schedules(tiny_xl_pipe, sampler, schedule, single_thread):
    check(tiny_xl_pipe, sampler=sampler, scheduler=schedule, **XL)


@pytest.mark.parametrize("prompt,settings", [
    (PROMPT, {"negative": ""}),  # the WebUI zeroes an empty negative prompt
    ("a cat BREAK a dog, (sunset:1.4)", {}),
    (LONG, {}),  # several chunks, comma backtracking; the pooled vector is the first chunk's
    ("a cat", {"negative": LONG}),  # prompt and negative of different chunk counts
    (PROMPT, {"emphasis": "No norm"}),
    (PROMPT, {"emphasis": "None"}),
    (PROMPT, {"clip_skip": 2}),  # ignored for SDXL, as in the WebUI
    ("a [cat:dog:2] in a field", {"negative": "[:ugly:2]"}),  # an empty scheduled negative is not zeroed
    ("a cat :1.2 AND a (dog:1.3) :0.6", {}),
    (PROMPT, {"width": 64, "height": 48, "batch_size": 2, "seed": 5}),  # time ids (height, width)
], ids=["empty-negative", "break", "long", "unequal-chunks", "no-norm", "none", "clip-skip", "editing", "and",
        "size-batch"])
def test_conditioning(tiny_xl_pipe, prompt, settings, single_thread):
    check(tiny_xl_pipe, prompt, cfg=12.0, **{"sampler": "DPM++ 2M", **XL, **settings})


def test_img2img_and_inpaint(tiny_xl_pipe, single_thread):
    image, mask = _inputs()
    image, mask = image.resize((64, 64)), mask.resize((64, 64))
    check(tiny_xl_pipe, sampler="Euler a", init_image=image, denoising_strength=0.6, steps=5, **XL)
    check(tiny_xl_pipe, sampler="DPM++ 2M", init_image=image, mask_image=mask, inpainting_fill="latent noise",
          denoising_strength=0.8, **XL)


def test_img2img_with_the_refiner_as_the_model(tiny_xl, single_thread):
    from tests.conftest import _load_on_cpu

    image, _ = _inputs()
    refiner = _load_on_cpu(tiny_xl["refiner"])  # OpenCLIP-bigG only; time ids with the aesthetic score
    check(refiner, sampler="DPM++ 2M", init_image=image.resize((64, 64)), denoising_strength=0.7, **XL)
    check(refiner, sampler="Euler a", init_image=image.resize((64, 64)), denoising_strength=0.5, negative="", **XL)


def test_inpaint_with_a_9_channel_sdxl_checkpoint(tiny_xl_inpaint_pipe, single_thread):
    image, mask = _inputs()
    check(tiny_xl_inpaint_pipe, sampler="DPM++ 2M SDE", init_image=image.resize((64, 64)),
          mask_image=mask.resize((64, 64)), denoising_strength=1.0, **XL)


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a", "DDIM"])
def test_v_prediction(tiny_xl, sampler, single_thread):
    from tests.conftest import _load_on_cpu

    pipe = _load_on_cpu(tiny_xl["base"])  # a v-prediction SDXL model (as a v_pred checkpoint loads)
    pipe.pipe.scheduler.register_to_config(prediction_type="v_prediction")
    pipe.base_scheduler.register_to_config(prediction_type="v_prediction")
    check(pipe, sampler=sampler, **XL)


@pytest.mark.parametrize("emphasis", ["Original", "No norm", "None"])
def test_sdxl_conditioning_is_the_webuis(tiny_xl_pipe, emphasis):
    from sdcli.conditioning.sdxl import SDXLPromptEncoder
    from tests.reference.sdxl_ref import SDXLConditioner

    ours = SDXLPromptEncoder(tiny_xl_pipe.pipe, 1, emphasis.lower(), size=(64, 48))
    theirs = SDXLConditioner(tiny_xl_pipe.pipe, 64, 48, emphasis)
    for prompt in [p for p in PROMPTS if "1.2.3" not in p]:
        cond, expected = ours.encode(prompt), theirs([prompt])
        added = cond.extra["added_cond_kwargs"]
        assert cond.crossattn.shape == expected["crossattn"].shape, prompt
        torch.testing.assert_close(cond.crossattn, expected["crossattn"], rtol=0, atol=1e-6, msg=prompt)
        torch.testing.assert_close(added["text_embeds"], expected["text_embeds"], rtol=0, atol=1e-6, msg=prompt)
        torch.testing.assert_close(added["time_ids"], expected["time_ids"], rtol=0, atol=0, msg=prompt)
    zero = ours.negative_encoder(True)("")
    expected = theirs.negative()([""])
    assert not zero.crossattn.any() and not zero.extra["added_cond_kwargs"]["text_embeds"].any()
    assert not expected["crossattn"].any() and zero.crossattn.shape == expected["crossattn"].shape
    assert ours.encode("").crossattn.abs().sum() > 0  # an empty prompt (not negative) is encoded


def test_refiner_conditioning_is_the_webuis(tiny_xl):
    from tests.conftest import _load_on_cpu
    from tests.reference.sdxl_ref import SDXLConditioner

    loaded = _load_on_cpu(tiny_xl["refiner"])
    refiner = loaded.pipe
    ours = loaded.family.prompt_encoder(refiner, 1, "original", (64, 64))
    theirs = SDXLConditioner(refiner, 64, 64)
    for negative, conditioner in ((False, theirs), (True, theirs.negative())):
        cond, expected = ours.encode(PROMPT, negative=negative), conditioner([PROMPT])
        torch.testing.assert_close(cond.crossattn, expected["crossattn"], rtol=0, atol=1e-6)
        torch.testing.assert_close(cond.extra["added_cond_kwargs"]["time_ids"], expected["time_ids"])
    assert cond.extra["added_cond_kwargs"]["time_ids"].tolist() == [[64, 64, 0, 0, 2.5]]  # negative: low score


@pytest.fixture(scope="module")
def refiner_pipe(tiny_xl):
    from tests.conftest import _load_on_cpu

    return _load_on_cpu(tiny_xl["refiner"])


@pytest.mark.parametrize("settings", [
    {"sampler": "DPM++ 2M", "refiner_switch_at": 0.5},
    {"sampler": "Euler a", "refiner_switch_at": 0.8, "steps": 6, "negative": ""},
    {"sampler": "DPM++ SDE", "refiner_switch_at": 0.3},  # second order: the switch falls between its two calls
    {"sampler": "DDIM", "refiner_switch_at": 0.6, "steps": 5},
    {"sampler": "UniPC", "refiner_switch_at": 0.6, "steps": 5},
    {"sampler": "LCM", "refiner_switch_at": 0.5, "steps": 4},
], ids=lambda s: f"{s['sampler']}@{s['refiner_switch_at']}")
def test_refiner_switches_inside_the_run_as_the_webui(tiny_xl_pipe, refiner_pipe, settings, single_thread):
    check(tiny_xl_pipe, refiner=refiner_pipe, **XL, **settings)


def test_refiner_switch_changes_the_image(tiny_xl_pipe, refiner_pipe, single_thread):
    import numpy as np

    from tests.reference.parity import sdcli_images

    plain = sdcli_images(tiny_xl_pipe, PROMPT, sampler="DPM++ 2M", steps=4, seed=1, **XL)[0]
    refined = sdcli_images(tiny_xl_pipe, PROMPT, sampler="DPM++ 2M", steps=4, seed=1, refiner=refiner_pipe,
                           refiner_switch_at=0.5, **XL)[0]
    assert np.abs(plain.astype(int) - refined.astype(int)).max() > TOLERANCE


def test_refiner_runs_the_own_loop(tiny_xl_pipe):
    from dataclasses import replace

    from sdcli.execution.stages import runs_own_loop
    from sdcli.request.generation import GenerationRequest, validate

    request = GenerationRequest(prompt="x", sampler="dpm++ 2m", negative_prompt=NEGATIVE)
    assert runs_own_loop(tiny_xl_pipe, validate(request), request)
    assert runs_own_loop(tiny_xl_pipe, validate(request), replace(request, refiner="r"))
    for sampler in ("unipc", "lcm", "ddim cfg++"):  # every sampler is in the loop: the switch is the WebUI's
        other = replace(request, sampler=sampler, refiner="r")
        assert runs_own_loop(tiny_xl_pipe, validate(other), other)
