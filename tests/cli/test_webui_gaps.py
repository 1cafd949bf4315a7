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


def test_a_weight_that_is_not_a_number_is_named_before_loading(cli, tiny_model, tmp_path):
    missing = tmp_path / "no-model"  # refused before the model is looked at
    result = cli("txt2img", "-m", missing, "a (red:1.2.3) cat")
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: prompt: the weight '1.2.3' in '(red:1.2.3)' is not a number"
    result = cli("txt2img", "-m", missing, "-n", "((ugly:.)) blur", "a cat")
    assert result.exit_code == 2 and "--negative-prompt: the weight '.' in '(ugly:.)'" in result.stderr
    prompts = tmp_path / "p.txt"
    prompts.write_text('--prompt "a cat"\n--prompt "a (dog:1..5)"\n')
    result = cli("batch", prompts, "-m", tiny_model, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "p.txt:2: prompt: the weight '1..5' in '(dog:1..5)'" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_without_a_component_names_it(cli, tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "novae"
    shutil.copytree(tiny_model, folder)
    shutil.rmtree(folder / "vae")
    result = cli("txt2img", "-m", folder, *FAST, "-o", tmp_path / "out", "a cat")
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert f"--model: {folder} has no vae/ folder, which its model_index.json lists (AutoencoderKL)" in result.stderr
