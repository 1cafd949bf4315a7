import pytest

from sdcli.core.errors import UsageError
from sdcli.core.request import GenerationRequest, RuntimeOptions, validate, validate_runtime


@pytest.mark.parametrize("change, message", [
    ({"width": 100}, r"--width: 100 is not a multiple of 8; try 96 or 104"),
    ({"height": 63}, r"--height: 63 is not a multiple of 8"),
    ({"steps": 0}, r"--steps: 0 is out of range"),
    ({"cfg_scale": -1.0}, r"--cfg-scale: -1.0 is negative"),
    ({"clip_skip": 0}, r"--clip-skip: 0 is out of range; use 1 to 12"),
    ({"clip_skip": 13}, r"--clip-skip: 13 is out of range"),
    ({"batch_size": 0}, r"--batch-size: 0 is out of range"),
    ({"seed": -5}, r"--seed: -5 is out of range"),
    ({"sampler": "nope"}, r"--sampler: unknown sampler 'nope'"),
])
def test_validate_names_flag_and_value(change, message):
    with pytest.raises(UsageError, match=message) as info:
        validate(GenerationRequest(prompt="x", **change))
    assert info.value.exit_code == 2


def test_valid_request_returns_resolved_sampler():
    assert validate(GenerationRequest(prompt="x", sampler="Euler a")).sampler.name == "Euler a"


def test_seeds_are_seed_plus_index_over_batches():
    req = GenerationRequest(prompt="x", seed=10, batch_size=2, count=3)
    assert req.seeds() == [10, 11, 12, 13, 14, 15]


@pytest.mark.parametrize("seed", [None, -1])
def test_random_seed_is_resolved_to_a_concrete_one(seed):
    resolved = GenerationRequest(prompt="x", seed=seed).with_resolved_seed()
    assert isinstance(resolved.seed, int) and resolved.seed >= 0


@pytest.mark.parametrize("opts, flag", [
    (RuntimeOptions(device="tpu"), "--device"),
    (RuntimeOptions(dtype="fp8"), "--dtype"),
    (RuntimeOptions(attention_slicing="maybe"), "--attention-slicing"),
])
def test_runtime_flags_validated(opts, flag):
    with pytest.raises(UsageError, match=flag):
        validate_runtime(opts)
