"""WebUI inputs the WebUI takes and sdcli once refused or mangled (issue 20, point 4)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sdcli.io.metadata import read_infotext

FAST = ("--steps", "3", "--width", "32", "--height", "32", "--seed", "4")


def _pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_a_timestep_sampler_takes_any_schedule_type_as_the_webui_does(cli, tiny_model, tmp_path):
    plain = cli("txt2img", "-m", tiny_model, *FAST, "--sampler", "DDIM", "-o", tmp_path / "a", "a cat")
    karras = cli("txt2img", "-m", tiny_model, *FAST, "--sampler", "DDIM", "--schedule", "karras",
                 "-o", tmp_path / "b", "a cat")
    assert plain.exit_code == 0 and karras.exit_code == 0, karras.stderr
    assert "DDIM runs on its own timesteps" in karras.stderr and "Karras has no effect" in karras.stderr
    a, b = next((tmp_path / "a").glob("*.png")), next((tmp_path / "b").glob("*.png"))
    assert np.array_equal(_pixels(a), _pixels(b))  # the schedule type has no effect on DDIM
    assert "Schedule type: Uniform" in read_infotext(a) and "Schedule type: Karras" in read_infotext(b)
    # The image replays (the WebUI wrote such images: a schedule left set while switching sampler).
    replayed = cli("replay", b, "-m", tiny_model, "-o", tmp_path / "c")
    assert replayed.exit_code == 0, replayed.stderr
    c = next((tmp_path / "c").glob("*.png"))
    assert np.array_equal(_pixels(b), _pixels(c)) and "Schedule type: Karras" in read_infotext(c)
    # A sigma sampler's schedule type still matters.
    euler = cli("txt2img", "-m", tiny_model, *FAST, "--sampler", "Euler", "--schedule", "karras",
                "-o", tmp_path / "d", "a cat")
    assert euler.exit_code == 0 and "no effect" not in euler.stderr


def test_a_prompt_file_line_with_ddim_and_a_schedule_runs(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text('--prompt "a cat" --sampler_name "PLMS" --scheduler karras\n')
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "Sampler: PLMS, Schedule type: Karras" in read_infotext(next((tmp_path / "out").glob("*.png")))
