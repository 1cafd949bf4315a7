import os

import pytest

from sdcli.core.output import check_pattern, next_number, prepare_folder, render_name, write_atomic
from sdcli.errors import RuntimeFailure, UsageError

VALUES = {"num": 7, "seed": 42, "steps": 20, "cfg_scale": 7.0, "sampler": "DPM++ 2M", "width": 64,
          "height": 64, "prompt_plain": 'a cat/dog: "best" <photo> of the day at noon please', "model": "m",
          "index": 0}


def test_default_and_custom_patterns():
    assert render_name("[num]-[seed]", VALUES) == "00007-42"
    assert render_name("[seed]-[sampler]-[cfg]-[steps]", VALUES) == "42-DPM++ 2M-7-20"
    name = render_name("[prompt_words]", VALUES)
    assert "/" not in name and ":" not in name and '"' not in name and "<" not in name


def test_unknown_pattern_field_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--name: unknown field \[sed\]"):
        check_pattern("[num]-[sed]")
    with pytest.raises(UsageError, match="--name"):
        check_pattern("sub/[seed]")


def test_running_number_continues_after_highest(tmp_path):
    assert next_number(tmp_path) == 0
    for name in ("00000-1.png", "00041-9.png", "notes.txt", "123-x.png"):
        (tmp_path / name).write_bytes(b"x")
    assert next_number(tmp_path) == 42


def test_write_never_overwrites(tmp_path):
    (tmp_path / "img.png").write_bytes(b"old")
    path = write_atomic(tmp_path, "img", ".png", lambda p: p.write_bytes(b"new"))
    assert path.name == "img-1.png"
    assert (tmp_path / "img.png").read_bytes() == b"old"
    assert path.read_bytes() == b"new"


def test_failed_save_leaves_nothing(tmp_path):
    def broken(p):
        p.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RuntimeFailure, match="No space left"):
        write_atomic(tmp_path, "img", ".png", broken)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_a_usage_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="--output: cannot write"):
        prepare_folder(ro / "sub")


def test_output_path_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="--output: cannot write to"):
        prepare_folder(tmp_path / "file")
