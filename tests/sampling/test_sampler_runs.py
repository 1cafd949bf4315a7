"""Every sampler of the table runs on the tiny model, reproducibly and distinctly."""

import json

import numpy as np
import pytest

from sdcli.core.generate import run
from sdcli.core.request import GenerationRequest, validate
from sdcli.sampling.samplers import SAMPLERS, resolve_sampler


def image(pipe, **fields):
    request = GenerationRequest(**{"prompt": "a lighthouse", "steps": 3, "seed": 1, "width": 32,
                                   "height": 32, **fields})
    items = list(run(request, pipe, validate(request), model_name="t", model_hash="0"))
    return np.stack([np.asarray(i.image, dtype=np.int16) for i in items])


@pytest.fixture(scope="module")
def every_config(tiny_pipe):
    """Pixels for each distinct (scheduler class, config) reachable from the table."""
    seen = {}
    for sampler in SAMPLERS:
        for schedule in sampler.schedules:
            choice = resolve_sampler(sampler.name, schedule)
            key = (sampler.scheduler, json.dumps(choice.scheduler_config, sort_keys=True))
            if key not in seen:
                seen[key] = (f"{sampler.name}/{schedule}", image(tiny_pipe, sampler=sampler.name, schedule=schedule))
    return seen


def test_every_sampler_and_schedule_runs_and_draws(every_config):
    assert len(every_config) >= 50
    for label, px in every_config.values():
        assert px.std() > 5, label


def test_distinct_configs_give_distinct_pixels(every_config):
    items = list(every_config.values())
    for i, (label_a, a) in enumerate(items):
        for label_b, b in items[i + 1:]:
            assert not np.array_equal(a, b), f"{label_a} == {label_b}"


@pytest.mark.parametrize("spellings", [
    [("DPM++ 2M Karras", "automatic"), ("dpmpp-2m-karras", "automatic"), ("k_dpmpp_2m_ka", "automatic"),
     ("DPM++ 2M", "karras"), ("DPM++ 2M", "automatic")],
    [("Euler a", "automatic"), ("k_euler_a", "automatic"), ("euler-a", "automatic")],
    [("DPM++ 2M SDE", "automatic"), ("DPM++ 2M SDE Exponential", "automatic")],
])
def test_aliases_of_one_sampler_give_identical_pixels(tiny_pipe, spellings):
    first = image(tiny_pipe, sampler=spellings[0][0], schedule=spellings[0][1])
    for name, schedule in spellings[1:]:
        assert np.array_equal(first, image(tiny_pipe, sampler=name, schedule=schedule)), name


@pytest.mark.parametrize("sampler", ["DPM++ SDE", "Euler a", "DPM2 a"])
def test_stochastic_samplers_are_reproducible_and_batch_independent(tiny_pipe, sampler):
    a = image(tiny_pipe, sampler=sampler)
    assert np.array_equal(a, image(tiny_pipe, sampler=sampler))
    batch = image(tiny_pipe, sampler=sampler, batch_size=2)
    assert np.abs(batch[0] - a[0]).max() <= 1
    assert np.abs(batch[1] - image(tiny_pipe, sampler=sampler, seed=2)[0]).max() <= 1


def test_scheduler_keeps_the_models_own_config(tiny_pipe):
    image(tiny_pipe, sampler="Euler")
    config = tiny_pipe.scheduler.config
    base = tiny_pipe.sdcli_base_scheduler.config
    assert type(tiny_pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    for key in ("beta_start", "beta_end", "beta_schedule", "steps_offset", "prediction_type"):
        assert config[key] == base[key], key
