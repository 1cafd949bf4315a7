"""Forge's Flux settings in the field table: Distilled CFG Scale, Shift, Module N, Diffusion in Low Bits; the
model family's defaults for unset cfg scale, sampler and schedule; the plan step's refusals."""

import dataclasses
import re

import pytest

from sdcli.errors import UsageError
from sdcli.families import FAMILIES
from sdcli.families.base import Capabilities, Family
from sdcli.families.sd1 import SD1
from sdcli.io.metadata import build_infotext, civitai_flux_fix, parse_infotext
from sdcli.job.family_rules import for_family
from sdcli.request.fields import infotext_values
from sdcli.request.generation import (
    GenerationRequest,
    validate,
    with_defaults,
)
from sdcli.request.modules import base_name, module_params, modules_from_infotext
from sdcli.request.records import request_from_dict, request_to_dict
from sdcli.request.written import Written

# What the Flux family module sets (Forge's flux preset, modules_forge/main_entry.py).
FLUX_DEFAULTS = {"cfg_scale": 1.0, "sampler": "Euler", "schedule": "simple", "distilled_cfg_scale": 3.5}
STUB_FLUX = Family("stub-flux", "Stub Flux", {}, 1024, defaults=FLUX_DEFAULTS,
                   capabilities=Capabilities(distilled_guidance=True, shift=True, low_bits=True))
FORGE_FLUX = ("a cat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
              "Seed: 1, Size: 896x1152, Model hash: 4c9f9e6a1b, Model: flux1-dev-bnb-nf4-v2, "
              "Version: f2.0.1v1.10.1-previous-313-g8a042934, Diffusion in Low Bits: Automatic (fp16 LoRA), "
              "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16")


def _params(request, traits=(), vae=None):
    choice = validate(request)
    return {k: v for k, v in infotext_values(Written(request, choice, request.seed or 1, None, 896, 1152,
                                                     traits=traits, vae=vae)).items() if v is not None}


def test_distilled_cfg_is_written_only_for_models_with_distilled_guidance():
    request = with_defaults(GenerationRequest(prompt="a cat", seed=1), FLUX_DEFAULTS)
    flux = _params(request, traits=STUB_FLUX.capabilities.traits)
    assert flux["Distilled CFG Scale"] == "3.5" and flux["CFG scale"] == "1" and flux["Sampler"] == "Euler"
    assert flux["Schedule type"] == "Simple"
    assert "Distilled CFG Scale" not in _params(request)  # the same request on a model without (schnell, SD)
    sd = _params(with_defaults(GenerationRequest(prompt="a cat", seed=1)), traits=SD1.capabilities.traits)
    assert SD1.capabilities.traits == () and not {"Distilled CFG Scale", "Shift", "Diffusion in Low Bits"} & set(sd)
    assert "Module 1" not in sd


def test_shift_and_low_bits_are_written_when_set_in_forges_spelling():
    request = with_defaults(GenerationRequest(prompt="x", seed=1, shift=3.0, low_bits="BNB-NF4 (fp16 lora)"))
    params = _params(request)
    assert params["Shift"] == "3" and params["Diffusion in Low Bits"] == "bnb-nf4 (fp16 LoRA)"
    assert "Diffusion in Low Bits" not in _params(dataclasses.replace(request, low_bits="automatic"))
    assert _params(dataclasses.replace(request, low_bits="Automatic (fp16 LoRA)"))["Diffusion in Low Bits"] == \
        "Automatic (fp16 LoRA)"


def test_a_forge_flux_infotext_is_written_as_forge_writes_it():
    request = with_defaults(GenerationRequest(prompt="a cat", seed=1, low_bits="automatic (fp16 lora)",
                                              text_encoders=("/m/text_encoder/clip_l.safetensors",
                                                             "t5xxl_fp16.safetensors")), FLUX_DEFAULTS)
    params = {"Size": "896x1152", "Model hash": "4c9f9e6a1b", "Model": "flux1-dev-bnb-nf4-v2",
              **_params(request, STUB_FLUX.capabilities.traits, vae="ae.safetensors"),
              "Version": "f2.0.1v1.10.1-previous-313-g8a042934"}
    del params["RNG"]  # sdcli always writes its noise source; Forge only when it is not GPU
    assert build_infotext("a cat", "", params) == FORGE_FLUX


def test_module_names_are_base_names_and_read_back():
    assert base_name("C:\\models\\VAE\\ae.safetensors") == "ae" and base_name("t5xxl_fp16.gguf") == "t5xxl_fp16"
    assert module_params(("clip_l.safetensors",), "/v/ae.sft") == {"Module 1": "ae", "Module 2": "clip_l"}
    assert module_params((), "ae.safetensors") == {}  # a VAE alone: the `VAE` key, as before
    _, _, values = parse_infotext(FORGE_FLUX)
    assert modules_from_infotext(values) == ("ae", ("clip_l", "t5xxl_fp16"))
    assert modules_from_infotext({"Module 2": "my_vae", "Module 1": "clip_l"}) == ("my_vae", ("clip_l",))
    assert modules_from_infotext({"Module 1": "x", "Module 2": "y"}, is_vae=lambda n: n == "y") == ("y", ("x",))
    assert modules_from_infotext({"VAE": "sdxl_vae", "Module 1": "clip_l"}) == ("sdxl_vae", ("clip_l",))


def test_unset_settings_take_the_family_defaults_then_the_fallback_then_sdclis():
    unset = GenerationRequest(prompt="x")
    assert (unset.cfg_scale, unset.sampler, unset.schedule, unset.distilled_cfg_scale) == (None, None, None, None)
    sd = with_defaults(unset)
    assert (sd.cfg_scale, sd.sampler, sd.schedule, sd.distilled_cfg_scale) == (7.0, "DPM++ 2M", "automatic", None)
    assert with_defaults(unset, fallback={"sampler": "Euler"}).sampler == "Euler"
    flux = for_family(unset, STUB_FLUX, fallback={"sampler": "Euler a"})
    assert (flux.cfg_scale, flux.sampler, flux.schedule, flux.distilled_cfg_scale) == (1.0, "Euler", "simple", 3.5)
    given = for_family(GenerationRequest(prompt="x", cfg_scale=2.0, sampler="DPM++ 2M", distilled_cfg_scale=5.0),
                       STUB_FLUX)
    assert (given.cfg_scale, given.sampler, given.schedule, given.distilled_cfg_scale) == (2.0, "DPM++ 2M",
                                                                                            "simple", 5.0)
    assert validate(flux).schedule_label == "Simple" and validate(flux).sampler.name == "Euler"


def test_settings_a_family_does_not_take_are_refused_in_one_line_naming_flag_and_family():
    takers = ", ".join(f.label for f in FAMILIES.values() if f.capabilities.distilled_guidance)
    assert takers.startswith("Flux.1 dev, Flux.1 Fill")
    with pytest.raises(UsageError, match=r"^--distilled-cfg: Stable Diffusion 1\.x models have no distilled "
                                         rf"guidance; it applies to {re.escape(takers)}$"):
        for_family(GenerationRequest(prompt="x", distilled_cfg_scale=3.5), SD1)
    with pytest.raises(UsageError, match=r"^--shift: Stable Diffusion 1\.x models have no sigma shift"):
        for_family(GenerationRequest(prompt="x", shift=3.0), SD1)
    with pytest.raises(UsageError, match=r"^--low-bits: Stable Diffusion 1\.x models"):
        for_family(GenerationRequest(prompt="x", low_bits="bnb-nf4"), SD1)
    assert for_family(GenerationRequest(prompt="x", low_bits="automatic"), SD1).low_bits == "automatic"
    # A WebUI API payload: dropped, as Forge ignores distilled_cfg_scale for SD models.
    assert for_family(GenerationRequest(prompt="x", distilled_cfg_scale=3.5), SD1, ignore_unused=True) == \
        with_defaults(GenerationRequest(prompt="x"))


def test_ranges_of_the_new_rows():
    with pytest.raises(UsageError, match=r"^--distilled-cfg: 31 is out of range; use 0 to 30$"):
        validate(GenerationRequest(prompt="x", distilled_cfg_scale=31))
    with pytest.raises(UsageError, match=r"^--shift: 0 is out of range; use more than 0 and at most 100$"):
        validate(GenerationRequest(prompt="x", shift=0))
    with pytest.raises(UsageError, match=r"^--low-bits: unknown value 'int4'; choose from automatic, "):
        validate(GenerationRequest(prompt="x", low_bits="int4"))
    with pytest.raises(UsageError, match=r"^--text-encoder: empty"):
        validate(GenerationRequest(prompt="x", text_encoders=(" ",)))


def test_records_of_sd_requests_are_unchanged_and_flux_ones_round_trip():
    sd = with_defaults(GenerationRequest(prompt="x", seed=1))
    assert not {"distilled_cfg_scale", "shift", "text_encoders", "low_bits"} & set(request_to_dict(sd))
    flux = for_family(GenerationRequest(prompt="x", seed=1, text_encoders=["clip_l", "t5xxl_fp16"], shift=2.0),
                      STUB_FLUX)
    data = request_to_dict(flux)
    assert data["distilled_cfg_scale"] == 3.5 and data["text_encoders"] == ("clip_l", "t5xxl_fp16")
    assert request_from_dict({**data, "text_encoders": list(data["text_encoders"])}) == flux


def test_civitai_flux_fix_follows_forges_conditions():
    civitai = ("Steps: 25, Sampler: Undefined, CFG scale: 3.5, Seed: 9, Size: 832x1216, Clip skip: 2, "
               "Model: FLUX, Civitai resources: []")
    fixed = civitai_flux_fix(civitai)
    assert fixed.startswith("Steps: 25, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: "
                            "3.5, Seed: 9") and "Clip skip" not in fixed
    assert civitai_flux_fix(civitai.replace("FLUX", "SDXL")) == civitai.replace("FLUX", "SDXL")  # both words needed
    assert civitai_flux_fix(civitai.replace("Civitai resources", "Other")) == civitai.replace("Civitai resources",
                                                                                              "Other")
