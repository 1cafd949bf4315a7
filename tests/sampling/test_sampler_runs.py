"""Every sampler of the table runs on the tiny model, reproducibly and distinctly."""

import numpy as np
import pytest

from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate
from sdcli.sampling.samplers import SAMPLERS, SCHEDULES, resolve_sampler


def image(pipe, **fields):
    request = GenerationRequest(**{"prompt": "a lighthouse", "steps": 3, "seed": 1, "width": 32,
                                   "height": 32, **fields})
    items = list(run(request, pipe, validate(request), model_name="t", model_hash="0"))
    return np.stack([np.asarray(i.image, dtype=np.int16) for i in items])


@pytest.fixture(scope="module")
def every_config(tiny_pipe):
    """Pixels for every sampler (its automatic schedule) and every schedule type (with Euler a).

    Left out, as they equal another in the WebUI too: Normal (Uniform, with the model's own
    sigma range) and Polyexponential (Exponential, at its default rho 1).
    """
    seen = {}
    wanted = [(s.name, "automatic") for s in SAMPLERS] + [("Euler a", x) for x in SCHEDULES
                                                          if x not in ("normal", "polyexponential")]
    for name, schedule in wanted:
        choice = resolve_sampler(name, schedule)
        key = (choice.sampler.name, choice.schedule)
        if key not in seen:
            # 4 steps: at 3, SGM Uniform and Simple pick the same timesteps (999, 666, 333)
            seen[key] = (f"{name}/{choice.schedule}", image(tiny_pipe, sampler=name, schedule=schedule, steps=4))
    return seen


def test_every_sampler_and_schedule_runs_and_draws(every_config):
    assert len(every_config) >= len(SAMPLERS) + len(SCHEDULES) - 3
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


def test_scheduler_keeps_the_models_own_config(tiny_pipe, monkeypatch):
    from sdcli.job import generate

    monkeypatch.setattr(generate, "runs_own_loop", lambda *_: False)  # as for other model families
    image(tiny_pipe, sampler="UniPC")  # run by the diffusers scheduler
    config = tiny_pipe.pipe.scheduler.config
    base = tiny_pipe.base_scheduler.config
    assert type(tiny_pipe.pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    for key in ("beta_start", "beta_end", "beta_schedule", "steps_offset", "prediction_type"):
        assert config[key] == base[key], key


@pytest.mark.parametrize("sampler", ["Euler", "DPM2"])
@pytest.mark.parametrize("steps, strength", [(5, 0.1), (4, 0.5), (3, 1.0)])
def test_img2img_steps_run_is_what_the_loop_reports(tiny_pipe, tmp_path, sampler, steps, strength):
    """request.steps_run (the --json field and the progress total) equals the steps sdcli's loop runs."""
    from sdcli.request.generation import ImageInput
    from tests.images import write_inputs

    source, _ = write_inputs(tmp_path, (32, 32))
    request = GenerationRequest(prompt="a lighthouse", steps=steps, seed=1, width=32, height=32, sampler=sampler,
                                mode="img2img", init=ImageInput(str(source), strength=strength))
    seen = []
    list(run(request, tiny_pipe, validate(request), model_name="t", model_hash="0",
             on_step=lambda step, total: seen.append((step, total))))
    assert seen[-1] == (request.steps_run, request.steps_run)
    assert request.steps_run == int(min(strength, 0.999) * steps) + 1


def test_a_loop_only_sampler_is_refused_where_the_loop_does_not_run(tiny_pipe, monkeypatch):
    """DDIM CFG++ has no diffusers scheduler: on the pipeline path (other families) it is a usage error."""
    from sdcli.errors import UsageError
    from sdcli.job import generate

    monkeypatch.setattr(generate, "runs_own_loop", lambda *_: False)
    with pytest.raises(UsageError, match="--sampler: DDIM CFG\\+\\+ runs only in sdcli's own loop"):
        image(tiny_pipe, sampler="DDIM CFG++")


def test_img2img_that_runs_no_diffusers_step_is_a_usage_error(tiny_pipe, tmp_path, monkeypatch):
    """On the pipeline path (other families) diffusers runs int(steps x strength) steps: 0 is refused."""
    from sdcli.errors import UsageError
    from sdcli.job import generate
    from sdcli.request.generation import ImageInput
    from tests.images import write_inputs

    monkeypatch.setattr(generate, "runs_own_loop", lambda *_: False)
    source, _ = write_inputs(tmp_path, (32, 32))
    request = GenerationRequest(prompt="x", steps=5, seed=1, width=32, height=32, mode="img2img",
                                init=ImageInput(str(source), strength=0.1))
    with pytest.raises(UsageError, match=r"--strength: 0.1 x --steps 5 runs no step in the diffusers pipeline"):
        list(run(request, tiny_pipe, validate(request), model_name="t", model_hash="0"))
