import pytest
from PIL import Image

from sdcli.io.metadata import build_infotext, parse_infotext, png_info, read_infotext

PARAMS = {
    "Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Seed": 1234,
    "Size": "512x768", "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly",
    "Clip skip": 2, "Version": "sdcli 0.1.0",
}


def test_exact_webui_layout():
    text = build_infotext("a cat", "blurry", PARAMS)
    assert text == (
        "a cat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, "
        "Version: sdcli 0.1.0"
    )


def test_key_order_follows_webui_whatever_the_insertion_order():
    shuffled = dict(reversed(list(PARAMS.items())))
    line = build_infotext("p", "", shuffled).splitlines()[-1]
    keys = [part.split(":")[0] for part in line.split(", ")]
    assert keys == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash",
                    "Model", "Clip skip", "Version"]


def test_omission_rules():
    text = build_infotext("p", "", {**PARAMS, "Clip skip": None})
    assert "Negative prompt" not in text
    assert "Clip skip" not in text


@pytest.mark.parametrize("prompt, negative", [
    ("a cat, sitting: on a mat", "ugly, blurry"),
    ("line one\nline two", "neg one\nneg two"),
    ('quotes "inside" and (weights:1.2)', ""),
    ("日本語の猫, émoji ✨", "ñ"),
])
def test_round_trip_field_by_field(prompt, negative):
    params = {**PARAMS, "Model": "my, model: v2", "Seed": 7}
    parsed_prompt, parsed_negative, parsed = parse_infotext(build_infotext(prompt, negative, params))
    assert parsed_prompt == prompt
    assert parsed_negative == negative
    assert parsed == {k: str(v) for k, v in params.items()}


def test_values_with_commas_colons_newlines_are_json_quoted():
    line = build_infotext("p", "", {"Steps": 1, "Sampler": "Euler", "Model": "a, b: c\nd"}).splitlines()[-1]
    assert line == 'Steps: 1, Sampler: Euler, Model: "a, b: c\\nd"'


def test_last_line_with_fewer_than_three_pairs_is_prompt():
    prompt, negative, params = parse_infotext("a cat\nstyle: oil, mood: calm")
    assert (prompt, negative, params) == ("a cat\nstyle: oil, mood: calm", "", {})


def test_png_parameters_chunk_round_trip(tmp_path):
    text = build_infotext("猫 cat", "dog", PARAMS)
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_info(text))
    assert read_infotext(path) == text


def test_jpeg_exif_user_comment_is_read(tmp_path):
    text = build_infotext("a cat", "", PARAMS)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    path = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    assert read_infotext(path) == text


def test_image_without_metadata_reads_none(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert read_infotext(tmp_path / "plain.png") is None
