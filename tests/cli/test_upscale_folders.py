"""`sdcli upscale` over folders and globs: outputs equal to one-file runs, subfolders, failures, Ctrl-C, --resume."""

import json
import os
import signal
import sys

import numpy as np
import pytest
from PIL import Image

from sdcli.batch import manifest
from sdcli.io.metadata import read_infotext

TEXT = "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 40x24, Version: sdcli"
SIZES = {"img10.png": (40, 32), "img2.jpg": (32, 24), "B.png": (24, 40)}  # name order: B, img2, img10


def write_folder(folder, sizes=SIZES):
    from sdcli.io.metadata import save_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for name, (w, h) in sizes.items():
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        fmt = "jpeg" if name.endswith(".jpg") else "png"
        save_image(image, folder / name, fmt, 95, TEXT, {"sdcli": "0", "request": {"prompt": "a cat"}})
    return folder


def px(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def items(folder):
    return [r for r in manifest.read_records(folder / manifest.MANIFEST) if r["type"] == "item"]


def files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != manifest.MANIFEST)


def test_a_folder_gives_each_input_the_one_file_upscale_with_its_metadata(cli, tmp_path):
    inputs = write_folder(tmp_path / "in")
    (inputs / "notes.txt").write_text("not an image")
    (inputs / ".hidden.png").write_bytes(b"ignored")
    out = inputs / "big"  # inside the input folder: never taken as inputs, now or on a second run
    result = cli("upscale", inputs, "--scale", "2", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "3 input(s), in name order; 1 file(s) not PNG/JPEG/WebP skipped" in result.stderr
    assert result.stdout.splitlines() == [str(out / n) for n in ("B.png", "img2.jpg", "img10.png")]
    records = items(out)
    assert [(r["item"], r["input"], r["path"], r["status"], r["error"]) for r in records] == [
        (i, str(inputs / n), str(out / n), "done", None) for i, n in enumerate(("B.png", "img2.jpg", "img10.png"))]
    assert all(isinstance(r["seconds"], float) for r in records)
    header = manifest.read_records(out / manifest.MANIFEST)[0]
    assert header["type"] == "batch" and header["items"] == 3 and header["options"]["upscaler"] == "Lanczos"
    for name, (w, h) in SIZES.items():
        single = cli("upscale", inputs / name, "--scale", "2", "-o", tmp_path / "single")
        assert single.exit_code == 0, single.stderr
        assert Image.open(out / name).size == (w * 2, h * 2)
        assert np.array_equal(px(out / name), px(single.stdout.strip()))
        assert read_infotext(out / name) == TEXT
    keys = "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert Image.open(out / "B.png").info["postprocessing"] == keys
    again = cli("upscale", inputs, "--scale", "2", "-o", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["type"], r["item"], r["source"]) for r in lines] == [
        ("upscale", i, str(inputs / n)) for i, n in enumerate(("B.png", "img2.jpg", "img10.png"))]


def test_recursive_keeps_subfolders_and_a_glob_picks_its_matches(cli, tmp_path):
    inputs = write_folder(tmp_path / "in", {"cat.png": (16, 16)})
    write_folder(inputs / "sub", {"cat.png": (24, 16)})
    result = cli("upscale", inputs, "--recursive", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    assert files(tmp_path / "o") == ["cat.png", "sub/cat.png"]  # same name, different subfolder: no clash
    assert Image.open(tmp_path / "o" / "sub" / "cat.png").size == (48, 32)
    flat = cli("upscale", inputs, "-o", tmp_path / "flat")
    assert flat.exit_code == 0 and files(tmp_path / "flat") == ["cat.png"]
    globbed = cli("upscale", str(inputs / "**" / "*.png"), "-o", tmp_path / "g")
    assert globbed.exit_code == 0, globbed.stderr
    assert files(tmp_path / "g") == ["cat.png", "sub/cat.png"]
    assert np.array_equal(px(tmp_path / "g" / "sub" / "cat.png"), px(tmp_path / "o" / "sub" / "cat.png"))
    other = write_folder(tmp_path / "other", {"dog.jpg": (16, 16), "cat.png": (8, 8)})
    mixed = cli("upscale", inputs, other / "dog.jpg", other / "cat.png", "-o", tmp_path / "m")
    assert mixed.exit_code == 0, mixed.stderr  # files beside a folder: inputs too, by name; a taken name gets -1
    assert [r["input"] for r in items(tmp_path / "m")] == [str(inputs / "cat.png"), str(other / "dog.jpg"),
                                                           str(other / "cat.png")]
    assert files(tmp_path / "m") == ["cat-1.png", "cat.png", "dog.jpg"]
    assert Image.open(tmp_path / "m" / "cat-1.png").size == (16, 16)


def test_an_esrgan_file_over_a_folder_and_one_that_cannot_load_leaves_nothing(cli, tmp_path):
    import torch
    from safetensors.torch import save_file

    from sdcli.models.tiny_assets import write_tiny_upscaler

    esrgan = write_tiny_upscaler(tmp_path / "4x-Tiny.safetensors")
    inputs = write_folder(tmp_path / "in", {"a.png": (16, 16), "b.png": (24, 16)})
    result = cli("upscale", inputs, "-u", esrgan, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    single = cli("upscale", inputs / "b.png", "-u", esrgan, "-o", tmp_path / "single")
    assert np.array_equal(px(tmp_path / "o" / "b.png"), px(single.stdout.strip()))
    unknown = tmp_path / "4x-Unknown.safetensors"  # a valid file, but no upscaler: it fails as it loads
    save_file({"weight": torch.zeros(2)}, unknown)
    failed = cli("upscale", inputs, "-u", unknown, "-o", tmp_path / "b")
    assert failed.exit_code == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "is not an upscaler architecture" in failed.stderr and not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    assert cli("upscale", inputs, "-u", unknown, "-o", tmp_path / "c").exit_code == 2
    assert list((tmp_path / "c").iterdir()) == []  # no manifest left to refuse the next run


def test_a_corrupt_input_fails_alone_and_exits_3(cli, tmp_path):
    inputs = write_folder(tmp_path / "in", {"a.png": (16, 16), "c.png": (16, 16)})
    (inputs / "b.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    result = cli("upscale", inputs, "-o", out, "--json")
    assert result.exit_code == 3, result.stderr
    assert files(out) == ["a.png", "c.png"]
    failed = [r for r in items(out) if r["status"] == "failed"]
    assert [(r["item"], r["input"], r["path"]) for r in failed] == [(1, str(inputs / "b.png"), None)]
    assert failed[0]["error"].startswith(f"IMAGE: {inputs / 'b.png'} is not a PNG, JPEG or WebP image")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["type"], r["item"]) for r in lines] == [("upscale", 0), ("item", 1), ("upscale", 2)]
    assert lines[1]["status"] == "failed" and f"item 1 (input {inputs / 'b.png'}) failed" in result.stderr
    assert "upscaled 2, skipped 0 (done before), failed 1 of 3" in result.stderr


def test_ctrl_c_then_resume_finishes_only_the_rest(cli, tmp_path, monkeypatch):
    import sdcli.job.upscale as core

    inputs = write_folder(tmp_path / "in")
    args = ["upscale", str(inputs), "--scale", "1.5"]
    full = cli(*args, "-o", tmp_path / "full")
    assert full.exit_code == 0, full.stderr
    real, calls = core.upscale_image, []

    def ctrl_c_in_second_image(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while this image is being made
        return real(*a, **k)

    monkeypatch.setattr(core, "upscale_image", ctrl_c_in_second_image)
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdcli", *args, "-o", str(run)])
    stopped = cli(*args, "-o", run)
    assert stopped.exit_code == 130, stopped.stderr
    assert f"note: to continue: sdcli {' '.join(args)} -o {run} --resume" in stopped.stderr
    assert files(run) == ["B.png", "img2.jpg"]  # the image under way finished, nothing half-written
    monkeypatch.setattr(core, "upscale_image", real)
    again = cli(*args, "-o", run)
    assert again.exit_code == 2 and "already holds a batch" in again.stderr
    resumed = cli(*args, "-o", run, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [str(run / "img10.png")]
    assert "resuming: 2 of 3 input(s) already done" in resumed.stderr
    assert files(run) == files(tmp_path / "full")
    for name in files(run):
        assert np.array_equal(px(run / name), px(tmp_path / "full" / name))
    changed = cli(*args[:2], "--scale", "2", "-o", run, "--resume")
    assert changed.exit_code == 2 and len(changed.stderr.strip().splitlines()) == 1
    assert changed.stderr.startswith(f"error: --resume: the inputs {inputs} (or the options) changed since the batch")
    write_folder(inputs, {"new.png": (16, 16)})
    grown = cli(*args, "-o", run, "--resume")
    assert grown.exit_code == 2 and "changed since the batch" in grown.stderr
    assert files(run) == files(tmp_path / "full")


@pytest.mark.parametrize("case", ["empty", "resume-files", "recursive-files", "glob-none", "missing-beside",
                                  "bad-flag"])
def test_set_usage_errors_are_one_line_and_write_nothing(cli, tmp_path, case):
    (tmp_path / "empty").mkdir()
    one = write_folder(tmp_path / "in", {"a.png": (16, 16)}) / "a.png"
    args, message = {
        "empty": ((tmp_path / "empty",), f"error: IMAGE: {tmp_path / 'empty'} holds no PNG, JPEG or WebP images"),
        "resume-files": ((one, "--resume"), "error: --resume: only with a folder or glob of images"),
        "recursive-files": ((one, "--recursive"), "error: --recursive: only with a folder or glob of images"),
        "glob-none": ((str(tmp_path / "in" / "*.webp"),), f"error: IMAGE: {tmp_path / 'in' / '*.webp'} matches no"),
        "missing-beside": ((tmp_path / "in", tmp_path / "gone.png"), f"error: IMAGE: {tmp_path / 'gone.png'}: no such"),
        "bad-flag": ((tmp_path / "in", "--scale", "9"), "error: --scale: 9 is out of range"),
    }[case]
    result = cli("upscale", *args, "-o", tmp_path / "o")
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
