"""Variation seeds (--subseed, --subseed-strength), as the WebUI does them."""

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from sdcli.io.metadata import parse_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from sdcli.sampling.rng import ImageNoise, slerp

BASE = {"prompt": "a lighthouse", "steps": 3, "seed": 1, "width": 32, "height": 32, "sampler": "DPM++ 2M"}


def generate(pipe, **fields):
    request = GenerationRequest(**{**BASE, **fields})
    return list(run(request, pipe, validate(request), model_name="t", model_hash="0"))


def pixels(items):
    return np.stack([np.asarray(i.image, dtype=np.int16) for i in items])


def test_slerp_endpoints_and_norm():
    a = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    b = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(slerp(0.0, a, b), a)
    torch.testing.assert_close(slerp(1.0, a, b), b)
    mid = slerp(0.5, a, b)
    # Spherical, not linear: the midpoint keeps the noise's norm instead of shrinking it.
    assert abs(mid.norm() / a.norm() - 1) < 0.05 < abs(((a + b) / 2).norm() / a.norm() - 1)


def test_main_noise_is_drawn_exactly_as_the_pipeline_draws_it():
    ours = ImageNoise("cpu", (4, 4, 4), [5], "cpu", subseeds=[9], subseed_strength=0.0).first()
    theirs = randn_tensor((1, 4, 4, 4), generator=torch.Generator("cpu").manual_seed(5), dtype=torch.float32)
    assert torch.equal(ours, theirs)


def test_strength_one_is_the_subseeds_image_and_half_is_between(tiny_pipe):
    plain = pixels(generate(tiny_pipe))
    other = pixels(generate(tiny_pipe, seed=7))
    full = pixels(generate(tiny_pipe, subseed=7, subseed_strength=1.0))
    half = pixels(generate(tiny_pipe, subseed=7, subseed_strength=0.5))
    assert np.abs(full - other).max() <= 1
    assert np.abs(half - plain).max() > 2 and np.abs(half - other).max() > 2


def test_variation_seeds_step_per_image_and_are_recorded(tiny_pipe):
    items = generate(tiny_pipe, subseed=100, subseed_strength=0.3, batch_size=2)
    assert [(i.seed, i.subseed) for i in items] == [(1, 100), (2, 101)]
    params = parse_infotext(items[1].infotext)[2]
    assert params["Variation seed"] == "101" and params["Variation seed strength"] == "0.3"
    line = items[1].infotext.splitlines()[-1]
    assert line.index("Model:") < line.index("Variation seed:") < line.index("Version:")
    single = generate(tiny_pipe, seed=2, subseed=101, subseed_strength=0.3)
    assert np.abs(pixels(items[1:]) - pixels(single)).max() <= 1


def test_no_variation_keys_without_strength(tiny_pipe):
    assert "Variation" not in generate(tiny_pipe, subseed=5)[0].infotext


@pytest.mark.parametrize("fields, flag", [({"subseed_strength": 1.5}, "--subseed-strength"),
                                          ({"subseed": -7, "subseed_strength": 0.5}, "--subseed")])
def test_bad_variation_flags(fields, flag):
    from sdcli.errors import UsageError

    with pytest.raises(UsageError, match=flag):
        validate(GenerationRequest(prompt="x", **fields))
