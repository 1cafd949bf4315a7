import os

import pytest

from sdcli.errors import RuntimeFailure, UsageError
from sdcli.io.output import check_pattern, next_number, prepare_folder, render_name, write_atomic

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


@pytest.mark.parametrize("code", ["EPERM", "ENOTSUP", "EXDEV"])
def test_file_systems_without_hard_links_or_chmod_still_never_overwrite(tmp_path, monkeypatch, code):
    import errno

    def no_link(src, dst):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    def no_chmod(path, mode):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "chmod", no_chmod)
    (tmp_path / "img.png").write_bytes(b"old")
    first = write_atomic(tmp_path, "img", ".png", lambda p: p.write_bytes(b"one"))
    second = write_atomic(tmp_path, "img", ".png", lambda p: p.write_bytes(b"two"))
    assert (first.name, second.name) == ("img-1.png", "img-2.png")
    assert [(tmp_path / n).read_bytes() for n in ("img.png", "img-1.png", "img-2.png")] == [b"old", b"one", b"two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img-1.png", "img-2.png", "img.png"]  # no temp left


def test_other_link_errors_still_fail_cleanly(tmp_path, monkeypatch):
    import errno

    def broken(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(RuntimeFailure, match="Input/output error"):
        write_atomic(tmp_path, "img", ".png", lambda p: p.write_bytes(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_names_over_the_byte_limit_are_shortened_keeping_the_extension(tmp_path, monkeypatch):
    values = {**VALUES, "prompt_plain": "猫 " * 8 + "é" * 400}
    stem = render_name("[num]-[prompt_words]-[prompt_words]-[prompt_words]", values)
    assert len(stem.encode()) <= 200 and stem.startswith("00007-猫 猫")
    path = write_atomic(tmp_path, "é" * 300, ".webp", lambda p: p.write_bytes(b"x"))
    assert path.suffix == ".webp" and len(path.name.encode()) <= 255 and path.read_bytes() == b"x"
    monkeypatch.setattr(os, "pathconf", lambda folder, name: 40)  # e.g. an encrypted home folder
    short = write_atomic(tmp_path, "猫" * 30, ".png", lambda p: p.write_bytes(b"y"))
    again = write_atomic(tmp_path, "猫" * 30, ".png", lambda p: p.write_bytes(b"z"))
    assert short.name.endswith(".png") and len(again.name.encode()) <= 40 and again.name.endswith("-1.png")


def test_checking_the_folder_creates_nothing_and_preparing_it_clears_stale_temps(tmp_path):
    from sdcli.io.output import check_folder

    check_folder(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        check_folder(tmp_path / "file" / "sub")
    stale = tmp_path / "out" / ".sdcli-999999999-abc.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half an image")
    mine = tmp_path / "out" / f".sdcli-{os.getpid()}-abc.tmp"
    mine.write_bytes(b"in progress")
    prepare_folder(tmp_path / "out")
    assert not stale.exists() and mine.exists()


def test_remove_if_empty_takes_back_only_the_empty_folders_it_made(tmp_path):
    from sdcli.io.output import missing_folders, prepare_folder, remove_if_empty

    deep = tmp_path / "a" / "b" / "c"
    made = missing_folders(deep)
    assert made == [deep, deep.parent, deep.parent.parent]
    prepare_folder(deep)
    remove_if_empty(made)
    assert not (tmp_path / "a").exists() and tmp_path.exists()
    prepare_folder(deep)
    (deep.parent / "kept.txt").write_text("x")
    remove_if_empty(made)
    assert not deep.exists() and (deep.parent / "kept.txt").exists()
