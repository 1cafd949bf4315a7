"""The field table (request.fields): each WebUI setting declared once, and the places derived from it agree."""

import dataclasses
from collections import Counter

import pytest

from sdcli.errors import UsageError
from sdcli.request.fields import FIELDS, field
from sdcli.request.generation import PARTS, GenerationRequest, validate

PSEUDO = ("hires.enable",)  # the prompt-file/API switch of the hires part, not a field of it


def test_every_row_is_a_request_field():
    own = {f.name for f in dataclasses.fields(GenerationRequest)}
    for row in FIELDS:
        if row.name in PSEUDO:
            continue
        fields = {f.name for f in dataclasses.fields(PARTS[row.part])} if row.part else own
        assert row.leaf in fields, row.name


def _once(values, shared=()):
    counts = Counter(v for v in values if v)
    return {v: n for v, n in counts.items() if n > 1 and v not in shared}


def test_each_name_is_declared_once():
    assert _once(row.name for row in FIELDS) == {}
    # WxH: both sides; -i/--image: img2img's input or an edit's reference images (one flag, two modes)
    assert _once((row.flag for row in FIELDS), shared=("--hires-size", "--image")) == {}
    assert _once(k for row in FIELDS for k in (row.key, *row.aliases)) == {}
    assert _once(row.axis for row in FIELDS) == {}
    # The WebUI's "Denoising strength" is img2img's strength or, on txt2img, the hires pass's (never both).
    assert _once((row.infotext for row in FIELDS), shared=("Denoising strength",)) == {}
    assert _once((row.api for row in FIELDS), shared=("denoising_strength",)) == {}


def test_validation_comes_from_the_rows():
    with pytest.raises(UsageError, match=r"^--steps: 0 is out of range; use 1 to 1000$"):
        validate(GenerationRequest(prompt="x", steps=0))
    with pytest.raises(UsageError, match=r"^--refiner-switch: 1 is out of range; use more than 0 and less than 1 "):
        validate(GenerationRequest(prompt="x", refiner_switch=1))
    with pytest.raises(UsageError, match=r"^--rng: unknown value 'tpu'; choose from cpu, gpu, nv, comfy$"):
        validate(GenerationRequest(prompt="x", rng="TPU"))
    assert field("init.strength").allowed == "more than 0 and at most 1"
    assert field("hires.scale").allowed == "1 to 8"


def _options():
    """Every option of the generating commands: flag -> its help text."""
    import typer.main

    from sdcli.cli import app

    group = typer.main.get_command(app)
    return {name: param.help or "" for command in ("txt2img", "img2img", "inpaint", "outpaint", "edit")
            for param in group.commands[command].params for name in param.opts}


def test_cli_flags_and_their_help_agree_with_the_table():
    options = _options()
    for row in FIELDS:
        if row.flag is None:
            continue
        assert row.flag in options, f"{row.name}: {row.flag} is not a flag of any generating command"
        if row.range is not None:
            assert row.allowed in options[row.flag], f"{row.flag}'s help does not give {row.allowed}"
        for choice in row.choices:
            assert choice in options[row.flag], f"{row.flag}'s help does not name {choice}"


def test_api_fields_exist_in_the_webui_payload():
    from sdcli.server.schemas import Img2ImgRequest

    payload = set(Img2ImgRequest.model_fields)
    assert [row.api for row in FIELDS if row.api and row.api not in payload] == []


def test_prompt_file_keys_and_axes_come_from_the_table():
    from sdcli.batch.keys import KEYS
    from sdcli.batch.xyz import AXES

    keys = {k.name: k.field for k in KEYS}
    assert all(keys[row.key] == row.name for row in FIELDS if row.key)
    labels = {a.label for a in AXES}
    assert {row.axis for row in FIELDS if row.axis} <= labels
