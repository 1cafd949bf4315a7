"""Reading Forge's Flux infotexts (io.replay.request_from_infotext): its keys back into a request, Forge's rules."""

from pathlib import Path

from sdcli.io.metadata import parse_infotext
from sdcli.io.replay import ImageMetadata, request_from_infotext
from tests.request.test_flux_fields import FORGE_FLUX

CIVITAI = ("a fox\nNegative prompt: blur\nSteps: 28, Sampler: Undefined, CFG scale: 3.5, Seed: 5, Size: 832x1216, "
           "Clip skip: 2, Created Date: 2024-09-01T0000:00.0000000Z, Civitai resources: [{\"modelName\": \"FLUX\"}], "
           "Civitai metadata: {}")


def _read(text):
    prompt, negative, params = parse_infotext(text)
    return request_from_infotext(ImageMetadata(Path("img.png"), prompt, negative, params, text, None))


def test_a_forge_flux_infotext_reads_back():
    request, ignored, given = _read(FORGE_FLUX)
    assert (request.cfg_scale, request.distilled_cfg_scale, request.sampler, request.schedule) == (1.0, 3.5, "Euler",
                                                                                                   "simple")
    assert request.text_encoders == ("clip_l", "t5xxl_fp16") and request.low_bits == "automatic (fp16 lora)"
    assert (request.width, request.height, request.seed, request.steps) == (896, 1152, 1, 20)
    assert ignored == []  # Module N, Distilled CFG Scale and Diffusion in Low Bits are all honoured
    assert {"distilled_cfg_scale", "text_encoders", "low_bits"} <= given


def test_a_missing_schedule_type_is_automatic_not_the_family_default():
    request, _, given = _read("a cat\nSteps: 20, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 64x64")
    assert request.schedule == "automatic" and "schedule" not in given
    assert request.distilled_cfg_scale is None and request.text_encoders == ()


def test_civitai_flux_parameters_are_read_with_forges_fix():
    request, ignored, _ = _read(CIVITAI)
    assert (request.sampler, request.schedule, request.cfg_scale, request.distilled_cfg_scale) == (
        "Euler", "simple", 1.0, 3.5)
    assert request.clip_skip == 1 and request.negative_prompt == "blur"
    assert "Clip skip" not in ignored and "Civitai resources" in ignored
    # Without Civitai's marks the keys are read as they are (and Undefined is no sampler sdcli has).
    plain, _, _ = _read(CIVITAI.replace("Civitai", "Tool"))
    assert (plain.sampler, plain.cfg_scale, plain.distilled_cfg_scale, plain.clip_skip) == ("Undefined", 3.5, None, 2)
