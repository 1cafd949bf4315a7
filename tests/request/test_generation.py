import pytest

from sdcli.errors import UsageError
from sdcli.models.runtime import RuntimeOptions, validate_runtime
from sdcli.request.generation import (
    GenerationRequest,
    ImageInput,
    InpaintSettings,
    OutpaintSettings,
    validate,
)


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


def image_request(mode="img2img", steps=20, **parts):
    defaults = {"init": ImageInput("in.png"), "inpaint": InpaintSettings("m.png") if mode != "img2img" else None,
                "outpaint": OutpaintSettings(left=8) if mode == "outpaint" else None}
    return GenerationRequest(prompt="x", mode=mode, steps=steps, **{**defaults, **parts})


@pytest.mark.parametrize("strength", [0.0, -0.5, 1.01, 2.0])
def test_strength_must_be_above_0_and_at_most_1(strength):
    with pytest.raises(UsageError, match=rf"--strength: {strength} is out of range; use more than 0 and at most 1"):
        validate(image_request(init=ImageInput("in.png", strength=strength)))


def test_steps_run_counts_as_the_webui_img2img():
    """int(min(strength, 0.999) x steps) + 1: the sigmas sampling.loop walks (the WebUI's t_enc + 1)."""
    assert image_request(steps=20).steps_run == 16  # strength 0.75
    assert image_request(steps=10, init=ImageInput("in.png", strength=1.0)).steps_run == 10  # 0.999 x 10 -> 9 + 1
    assert GenerationRequest(prompt="x", steps=7).steps_run == 7
    request = image_request(steps=5, init=ImageInput("in.png", strength=0.1))
    validate(request)  # the WebUI runs one step here
    assert request.steps_run == 1


@pytest.mark.parametrize("mode, part, message", [
    ("img2img", ImageInput("in.png", 0.5, "stretch"), r"--resize: unknown value 'stretch'; choose from just"),
    ("inpaint", InpaintSettings("m.png", mask_blur=-1), r"--mask-blur: -1 is out of range"),
    ("inpaint", InpaintSettings("m.png", padding=5000), r"--padding: 5000 is out of range"),
    ("inpaint", InpaintSettings("m.png", area="only"), r"--inpaint-area: unknown value 'only'; choose from whole"),
    ("inpaint", InpaintSettings("m.png", masked_content="latent"),
     r"--masked-content: unknown value 'latent'; choose from original, fill, latent-noise, latent-nothing"),
    ("outpaint", OutpaintSettings(), r"nothing to expand"),
    ("outpaint", OutpaintSettings(left=-8), r"--left: -8 is out of range"),
    ("outpaint", OutpaintSettings(up=8, fill="mirror"), r"--fill: unknown value 'mirror'; choose from edge"),
])
def test_image_flags_validated(mode, part, message):
    field = {ImageInput: "init", InpaintSettings: "inpaint", OutpaintSettings: "outpaint"}[type(part)]
    with pytest.raises(UsageError, match=message):
        validate(image_request(mode, **{field: part}))


def test_a_mode_without_its_parts_is_a_programming_error():
    with pytest.raises(ValueError, match="inpaint request needs inpaint"):
        validate(image_request("inpaint", inpaint=None))


def test_variation_seeds_work_in_every_mode():
    for mode in ("img2img", "inpaint"):
        validate(image_request(mode, subseed=3, subseed_strength=0.5))


def test_request_round_trips_through_a_dict():
    from dataclasses import asdict

    from sdcli.request.records import request_from_dict

    request = image_request("outpaint", outpaint=OutpaintSettings(up=16, fill="blur"))
    assert request_from_dict({**asdict(request), "from_a_future_version": 1}) == request


def test_every_image_of_a_run_has_a_seed_in_range():
    from sdcli.request.generation import MAX_SEED

    validate(GenerationRequest(prompt="x", seed=MAX_SEED - 3, batch_size=2, count=2))
    with pytest.raises(UsageError, match=r"^--seed: 4294967293 \+ 4 images passes 4294967295; use a first seed of "
                                         r"at most 4294967292$"):
        validate(GenerationRequest(prompt="x", seed=MAX_SEED - 2, batch_size=2, count=2))
    with pytest.raises(UsageError, match=r"^--subseed: 4294967295 \+ 2 images passes"):
        validate(GenerationRequest(prompt="x", subseed=MAX_SEED, subseed_strength=0.5, count=2))
    for _ in range(50):  # random seeds leave room too
        request = GenerationRequest(prompt="x", count=100000).with_resolved_seed()
        assert request.seed + 99999 <= MAX_SEED


def test_prompts_have_a_length_limit_and_must_be_valid_utf8():
    from sdcli.request.generation import MAX_PROMPT_CHARS

    validate(GenerationRequest(prompt="a" * MAX_PROMPT_CHARS))
    with pytest.raises(UsageError, match=rf"^--prompt: {MAX_PROMPT_CHARS + 1} characters; the limit is"):
        validate(GenerationRequest(prompt="a" * (MAX_PROMPT_CHARS + 1)))
    undecodable = b"caf\xff".decode("utf-8", errors="surrogateescape")  # what a shell hands Python
    with pytest.raises(UsageError, match=r"^--negative-prompt: not valid UTF-8 \(undecodable byte at character 4\)"):
        validate(GenerationRequest(prompt="x", negative_prompt=undecodable))


def test_records_name_later_settings_only_when_set():
    """Tiling came after records were first written: a record without it is the record it always was,
    and one with it reads back."""
    from sdcli.request.records import request_from_dict, request_to_dict

    plain = GenerationRequest(prompt="x", seed=1)
    assert "tiling" not in request_to_dict(plain)
    assert request_from_dict(request_to_dict(plain)) == plain
    tiled = GenerationRequest(prompt="x", seed=1, tiling=True)
    assert request_to_dict(tiled)["tiling"] is True
    assert request_from_dict(request_to_dict(tiled)) == tiled

