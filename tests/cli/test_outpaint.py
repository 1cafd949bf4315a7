import json

import numpy as np
import pytest

from sdcli.io.metadata import parse_infotext, read_infotext
from tests.images import FAST, pixels, pngs, write_inputs


@pytest.mark.parametrize("model", ["tiny_model", "tiny_inpaint_model"])
def test_outpaint_grows_the_canvas_and_keeps_the_original(cli, tmp_path, request, model):
    image, _ = write_inputs(tmp_path)
    result = cli("outpaint", "-i", image, "--left", "16", "--up", "8", "-m", request.getfixturevalue(model), *FAST,
                 "-o", tmp_path / "o", "--json", "a beach")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    out = pixels(record["path"])
    assert out.shape == (48, 64, 3) and (record["left"], record["up"], record["right"]) == (16, 8, 0)
    assert np.array_equal(out[8:, 16:], pixels(image))
    params = parse_infotext(read_infotext(record["path"]))[2]
    assert (params["Mask blur"], params["Outpaint"], params["Size"]) == ("8", "left 16 up 8", "64x48")


@pytest.mark.parametrize("args, expected", [
    (("--expand", "8"), "left 8 right 8 up 8 down 8"),
    (("--expand", "8", "--direction", "left,down"), "left 8 down 8"),
    (("--expand", "8", "--direction", "up", "--direction", "right"), "right 8 up 8"),
    (("--expand", "8", "--left", "16"), "left 16 right 8 up 8 down 8"),
])
def test_outpaint_expand_and_direction(cli, tiny_model, tmp_path, args, expected):
    image, _ = write_inputs(tmp_path)
    result = cli("outpaint", "-i", image, *args, "-m", tiny_model, *FAST, "-o", tmp_path / "o", "--json", "x")
    assert result.exit_code == 0, result.stderr
    assert parse_infotext(json.loads(result.stdout)["infotext"])[2]["Outpaint"] == expected


@pytest.mark.parametrize("args, message", [
    ((), "error: --left/--right/--up/--down: nothing to expand"),
    (("--direction", "left"), "error: --direction: needs --expand PX"),
    (("--expand", "8", "--direction", "north"), "error: --direction: unknown side 'north'; choose from left, right"),
    (("--left", "8", "--fill", "mirror"), "error: --fill: unknown value 'mirror'; choose from edge, noise, blur"),
    (("--left", "9000"), "error: --left: 9000 is out of range"),
    (("--left", "4096", "--right", "4096"), "error: --left/--right/--up/--down: the canvas would be 8240x40"),
])
def test_outpaint_bad_flags_exit_2_nothing_written(cli, tiny_model, tmp_path, args, message):
    image, _ = write_inputs(tmp_path)
    result = cli("outpaint", "-i", image, *args, "-m", tiny_model, *FAST, "-o", tmp_path / "o", "x")
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert pngs(tmp_path / "o") == []
