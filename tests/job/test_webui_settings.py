"""The WebUI's pixel-changing settings: flags -> request -> infotext keys -> replay."""

from pathlib import Path

import numpy as np
import pytest

from sdcli.errors import UsageError
from sdcli.io.metadata import parse_infotext
from sdcli.io.replay import ImageMetadata, request_from_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate

BASE = {"prompt": "a lighthouse", "steps": 3, "seed": 1, "width": 32, "height": 32}


def generate(pipe, **fields):
    request = GenerationRequest(**{**BASE, **fields})
    return list(run(request, pipe, validate(request), model_name="t", model_hash="0"))


def params(item):
    return parse_infotext(item.infotext)[2]


def test_keys_are_written_when_they_apply_and_read_back(tiny_pipe):
    item = generate(tiny_pipe, sampler="Euler a", eta=0.5, ensd=31337, rng="nv", emphasis="No norm",
                    sigma_min=0.1, sigma_max=10.0, schedule="karras")[0]
    got = params(item)
    assert {k: got[k] for k in ("RNG", "Emphasis", "Eta", "ENSD", "Schedule min sigma", "Schedule max sigma")} == {
        "RNG": "NV", "Emphasis": "No norm", "Eta": "0.5", "ENSD": "31337", "Schedule min sigma": "0.1",
        "Schedule max sigma": "10"}
    prompt, negative, parameters = parse_infotext(item.infotext)
    meta = ImageMetadata(Path("x.png"), prompt, negative, parameters, item.infotext, None)
    replayed = request_from_infotext(meta)[0]
    assert (replayed.rng, replayed.emphasis, replayed.eta, replayed.ensd, replayed.sigma_min, replayed.sigma_max) == (
        "nv", "no norm", 0.5, 31337, 0.1, 10.0)
    again = list(run(replayed, tiny_pipe, validate(replayed), model_name="t", model_hash="0"))[0]
    assert np.array_equal(np.asarray(again.image), np.asarray(item.image))


def test_keys_that_do_not_apply_are_left_out(tiny_pipe):
    got = params(generate(tiny_pipe, sampler="Euler", eta=0.5, ensd=5, s_churn=0.0)[0])
    assert got["RNG"] == "CPU"  # always: sdcli's default is not the WebUI's (GPU)
    assert not {"Eta", "ENSD", "Emphasis", "Sigma churn"} & set(got)
    churned = params(generate(tiny_pipe, sampler="Heun", s_churn=1.0, s_noise=1.01)[0])
    assert churned["Sigma churn"] == "1" and churned["Sigma noise"] == "1.01"


def test_settings_change_pixels_only_where_the_webui_applies_them(tiny_pipe):
    def px(**fields):
        return np.asarray(generate(tiny_pipe, **fields)[0].image, dtype=int)

    assert np.abs(px(sampler="Euler a") - px(sampler="Euler a", ensd=31337)).max() > 2
    assert np.array_equal(px(sampler="Euler"), px(sampler="Euler", ensd=31337))  # Euler draws no noise
    assert np.abs(px(sampler="Euler a") - px(sampler="Euler a", eta=0.3)).max() > 2
    assert np.abs(px(sampler="Euler a") - px(sampler="Euler a", rng="nv")).max() > 2


def test_webui_infotext_without_rng_key_replays_with_the_webui_default_gpu_noise():
    meta = ImageMetadata(Path("x.png"), "a cat", "", {"Steps": "20", "Seed": "1"}, "", None)
    assert request_from_infotext(meta)[0].rng == "nv"


@pytest.mark.parametrize("fields, flag", [({"rng": "tpu"}, "--rng"), ({"emphasis": "loud"}, "--emphasis"),
                                          ({"eta": -1.0}, "--eta"), ({"s_noise": -1.0}, "--s-noise"),
                                          ({"sigma_min": 5.0, "sigma_max": 1.0}, "--sigma-min")])
def test_bad_settings_name_their_flag(fields, flag):
    with pytest.raises(UsageError, match=flag):
        validate(GenerationRequest(prompt="x", **fields))
