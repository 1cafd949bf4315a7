import numpy as np
import pytest

from sdcli.errors import UsageError
from sdcli.io.metadata import parse_infotext
from sdcli.job.generate import run
from sdcli.request.generation import GenerationRequest, validate


def generate(pipe, **fields):
    request = GenerationRequest(**{"prompt": "a lighthouse", "steps": 3, "seed": 1, "width": 32,
                                   "height": 32, **fields})
    return list(run(request, pipe, validate(request), model_name="tiny", model_hash="0123456789"))


def pixels(images):
    return np.stack([np.asarray(i.image, dtype=np.int16) for i in images])


def test_same_request_same_pixels(tiny_pipe):
    assert np.array_equal(pixels(generate(tiny_pipe)), pixels(generate(tiny_pipe)))


def test_images_are_not_blank(tiny_pipe):
    px = pixels(generate(tiny_pipe))
    assert px.std() > 5, "a random-weight model still draws varied pixels"


def test_batch_equals_images_made_one_at_a_time(tiny_pipe):
    batched = pixels(generate(tiny_pipe, seed=5, batch_size=2))
    singles = pixels(generate(tiny_pipe, seed=5) + generate(tiny_pipe, seed=6))
    # Batched float math may differ in the last bit; no pixel may move by more than 1 level.
    assert np.abs(batched - singles).max() <= 1
    assert (batched == singles).mean() > 0.999


def test_count_runs_sequential_batches_with_consecutive_seeds(tiny_pipe):
    images = generate(tiny_pipe, seed=9, batch_size=2, count=2)
    assert [i.seed for i in images] == [9, 10, 11, 12]
    assert [i.index for i in images] == [0, 1, 2, 3]
    assert np.array_equal(pixels(images[2:3]), pixels(generate(tiny_pipe, seed=11)))


@pytest.mark.parametrize("change", [{"seed": 2}, {"clip_skip": 2}, {"sampler": "Euler a"},
                                    {"prompt": "a submarine"}, {"negative_prompt": "fog"}, {"cfg_scale": 2.0}])
def test_each_setting_changes_the_pixels(tiny_pipe, change):
    assert np.abs(pixels(generate(tiny_pipe)) - pixels(generate(tiny_pipe, **change))).max() > 2


def test_size_and_native_default(tiny_pipe):
    assert generate(tiny_pipe, width=48, height=24)[0].image.size == (48, 24)
    assert generate(tiny_pipe, width=None, height=None)[0].image.size == (64, 64)


def test_infotext_records_the_run(tiny_pipe):
    item = generate(tiny_pipe, clip_skip=2, seed=77, negative_prompt="fog", sampler="Euler a")[0]
    prompt, negative, params = parse_infotext(item.infotext)
    assert (prompt, negative) == ("a lighthouse", "fog")
    assert params == {"Steps": "3", "Sampler": "Euler a", "Schedule type": "Uniform", "CFG scale": "7",
                      "Seed": "77", "Size": "32x32", "Model hash": "0123456789", "Model": "tiny",
                      "Clip skip": "2", "RNG": "CPU", "Version": params["Version"]}


def test_clip_skip_deeper_than_the_model_is_refused(tiny_pipe, monkeypatch):
    monkeypatch.setattr(tiny_pipe.pipe.text_encoder.config, "num_hidden_layers", 4)
    with pytest.raises(UsageError, match="--clip-skip: 5 is deeper than this model's 4 text layers"):
        generate(tiny_pipe, clip_skip=5)
