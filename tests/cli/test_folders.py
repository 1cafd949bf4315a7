"""img2img / inpaint over a folder or glob of inputs: seeds, names, masks, failures, Ctrl-C and --resume."""

import json
import os
import signal
import sys

import numpy as np
import pytest
from PIL import Image

from sdcli.batch import manifest
from tests.images import pixels

pytestmark = pytest.mark.usefixtures("single_thread")
STEPS = ("--steps", "2")
SIZES = {"img10": (40, 32), "img2": (32, 32), "B": (48, 40)}  # natural name order: B, img2, img10


def write_folder(folder, sizes=SIZES, masks=None):
    """Smooth random inputs of different sizes (and, in `masks`, a mask of each input's size)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for stem, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{stem}.png")
        if masks is not None:
            masks.mkdir(parents=True, exist_ok=True)
            mask = Image.new("L", (w, h), 0)
            mask.paste(255, (w // 4, h // 4, w // 2, h // 2))
            mask.save(masks / f"{stem}.png")
    return folder


def item_records(folder):
    return [r for r in manifest.read_records(folder / manifest.MANIFEST) if r["type"] == "item"]


def outputs(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != manifest.MANIFEST) if folder.exists() else []


def test_a_folder_gives_one_output_per_input_equal_to_the_single_file_run_with_seed_plus_i(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in")
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = cli("img2img", "-i", inputs, "-m", tiny_model, *STEPS, "--seed", "10", "-o", out, "a harbour")
    assert result.exit_code == 0, result.stderr
    assert "3 input(s) from" in result.stderr and "1 file(s) not PNG/JPEG/WebP skipped" in result.stderr
    assert result.stdout.splitlines() == [str(out / n) for n in ("B-10.png", "img2-11.png", "img10-12.png")]
    assert outputs(out) == ["B-10.png", "img10-12.png", "img2-11.png"]
    records = item_records(out)
    assert [(r["item"], r["seed"], r["input"], r["status"]) for r in records] == [
        (i, 10 + i, str(inputs / f"{stem}.png"), "done") for i, stem in enumerate(("B", "img2", "img10"))]
    for i, stem in enumerate(("B", "img2", "img10")):  # the same as one input at a time with seed + i
        single = cli("img2img", "-i", inputs / f"{stem}.png", "-m", tiny_model, *STEPS, "--seed", 10 + i,
                     "-o", tmp_path / "single", "a harbour")
        assert single.exit_code == 0, single.stderr
        assert Image.open(out / f"{stem}-{10 + i}.png").size == Image.open(single.stdout.strip()).size
        assert np.array_equal(pixels(out / f"{stem}-{10 + i}.png"), pixels(single.stdout.strip()))
    assert Image.open(out / "B-10.png").size == (48, 40)  # each input's own size (a multiple of 8 already)


def test_a_quoted_glob_with_width_height_json_and_name(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in")
    result = cli("img2img", "-i", str(inputs / "img*.png"), "-m", tiny_model, *STEPS, "--seed", "3", "-W", "32",
                 "-H", "32", "--name", "[num]-[input]", "-o", tmp_path / "out", "--json", "x")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["item"], r["seed"], os.path.basename(r["path"]), r["input"]) for r in records] == [
        (0, 3, "00000-img2.png", str(inputs / "img2.png")), (1, 4, "00001-img10.png", str(inputs / "img10.png"))]
    assert {Image.open(r["path"]).size for r in records} == {(32, 32)}


def test_default_output_folder_is_named_after_the_input_folder(cli, tiny_model, tmp_path, monkeypatch):
    write_folder(tmp_path / "photos", {"a": (32, 32)})
    monkeypatch.chdir(tmp_path)
    result = cli("img2img", "-i", "photos", "-m", tiny_model, *STEPS, "--seed", "1", "x")
    assert result.exit_code == 0, result.stderr
    assert outputs(tmp_path / "outputs" / "photos") == ["a-1.png"]
    again = cli("img2img", "-i", "photos", "-m", tiny_model, *STEPS, "--seed", "1", "x")
    assert again.exit_code == 2 and "already holds a batch" in again.stderr and "--resume" in again.stderr


def test_inpaint_pairs_masks_by_name_each_equal_to_the_single_file_run(cli, tiny_model, tmp_path):
    sizes = {"b": (32, 32), "a": (40, 32)}
    inputs = write_folder(tmp_path / "in", sizes, masks=tmp_path / "masks")
    Image.new("L", (32, 32), 255).save(tmp_path / "masks" / "unused.png")
    out = tmp_path / "out"
    result = cli("inpaint", "-i", inputs, "--mask", tmp_path / "masks", "-m", tiny_model, *STEPS, "--seed", "4",
                 "-o", out, "x")
    assert result.exit_code == 0, result.stderr
    assert "1 mask(s) match no input and are not used (first: unused)" in result.stderr
    assert [(r["input"], r["mask"]) for r in item_records(out)] == [
        (str(inputs / f"{s}.png"), str(tmp_path / "masks" / f"{s}.png")) for s in ("a", "b")]
    for i, stem in enumerate(("a", "b")):
        single = cli("inpaint", "-i", inputs / f"{stem}.png", "--mask", tmp_path / "masks" / f"{stem}.png",
                     "-m", tiny_model, *STEPS, "--seed", 4 + i, "-o", tmp_path / "single", "x")
        assert single.exit_code == 0, single.stderr
        assert np.array_equal(pixels(out / f"{stem}-{4 + i}.png"), pixels(single.stdout.strip()))


def test_inpaint_one_mask_file_serves_every_input(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in", {"a": (32, 32), "b": (32, 32)})
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 8, 8))  # repaint the top-left corner only
    mask.save(tmp_path / "corner.png")
    result = cli("inpaint", "-i", inputs, "--mask", tmp_path / "corner.png", "-m", tiny_model, *STEPS,
                 "--seed", "1", "--mask-blur", "0", "-o", tmp_path / "out", "x")
    assert result.exit_code == 0, result.stderr
    for stem, seed in (("a", 1), ("b", 2)):
        made, given = pixels(tmp_path / "out" / f"{stem}-{seed}.png"), pixels(inputs / f"{stem}.png")
        assert np.array_equal(made[8:], given[8:]) and np.array_equal(made[:, 8:], given[:, 8:])
        assert not np.array_equal(made[:8, :8], given[:8, :8])


def test_a_missing_mask_is_exit_2_naming_the_input_before_anything_runs(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in", {"a": (32, 32), "b": (32, 32)}, masks=tmp_path / "masks")
    (tmp_path / "masks" / "b.png").unlink()
    result = cli("inpaint", "-i", inputs, "--mask", tmp_path / "masks", "-m", tiny_model, *STEPS,
                 "-o", tmp_path / "out", "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --mask: no mask for input {inputs / 'b.png'}: no b.png, .jpg, .jpeg "
                                     f"or .webp in {tmp_path / 'masks'}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (("-i", "{d}/empty"), "error: --image: {d}/empty holds no PNG, JPEG or WebP images (1 other file(s) skipped"),
    (("-i", "{d}/in/*.jpg"), "error: --image: {d}/in/*.jpg matches no PNG, JPEG or WebP images"),
    (("-i", "{d}/in/a.png", "--resume"), "error: --resume: only with a folder or glob of --image inputs"),
    (("-i", "{d}/in/a.png", "--recursive"), "error: --recursive: only with a folder or glob of --image inputs"),
    (("-i", "{d}/in", "--server", "http://127.0.0.1:9"), "error: --server: a folder or glob of inputs runs here"),
    (("-i", "{d}/in", "--strength", "2"), "error: --strength: 2.0 is out of range"),
])
def test_bad_input_sets_are_one_line_exit_2_nothing_written(cli, tiny_model, tmp_path, args, message):
    write_folder(tmp_path / "in", {"a": (32, 32)})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    result = cli("img2img", *(a.format(d=tmp_path) for a in args), "-m", tiny_model, *STEPS,
                 "-o", tmp_path / "out", "x")
    assert result.exit_code == 2 and result.stderr.startswith(message.format(d=tmp_path)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_corrupt_input_is_a_recorded_failure_the_others_are_written_exit_3(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in", {"a": (32, 32), "c": (32, 32)})
    (inputs / "b.png").write_bytes((inputs / "a.png").read_bytes()[:100])  # truncated
    out = tmp_path / "out"
    result = cli("img2img", "-i", inputs, "-m", tiny_model, *STEPS, "--seed", "1", "-o", out, "x")
    assert result.exit_code == 3, result.stderr
    assert outputs(out) == ["a-1.png", "c-3.png"]
    failed = [r for r in item_records(out) if r["status"] == "failed"]
    assert [(r["item"], r["seed"], r["input"], r["path"]) for r in failed] == [(1, 2, str(inputs / "b.png"), None)]
    assert failed[0]["error"].startswith(f"--image: {inputs / 'b.png'} is corrupt or unreadable")
    assert f"input {inputs / 'b.png'}, seed 2) failed: --image:" in result.stderr


def test_ctrl_c_prints_the_resume_command_and_resume_skips_done_inputs(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    inputs = write_folder(tmp_path / "in")
    args = ["img2img", "-i", str(inputs), "-m", str(tiny_model), *STEPS, "--seed", "7", "x"]
    full = cli(*args, "-o", tmp_path / "full")
    assert full.exit_code == 0, full.stderr
    real, calls = generate.run, []

    def ctrl_c_in_second_image(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while this image is being made
        yield from real(*a, **k)

    monkeypatch.setattr(generate, "run", ctrl_c_in_second_image)
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["sdcli", *args, "-o", str(run)])
    stopped = cli(*args, "-o", run)
    assert stopped.exit_code == 130
    assert f"note: to continue: sdcli {' '.join(args)} -o {run} --resume" in stopped.stderr
    assert outputs(run) == ["B-7.png", "img2-8.png"]
    monkeypatch.setattr(generate, "run", real)
    resumed = cli(*args, "-o", run, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [str(run / "img10-9.png")]  # only the input not done yet
    assert outputs(run) == outputs(tmp_path / "full")
    for name in outputs(run):
        assert np.array_equal(pixels(run / name), pixels(tmp_path / "full" / name))
    changed = cli(*args, "-o", run, "--resume", "--strength", "0.5")
    assert changed.exit_code == 2
    assert changed.stderr.splitlines()[-1].startswith(
        f"error: --resume: the inputs {inputs} (or the options) changed since the batch")


def test_a_prompt_file_line_with_a_folder_runs_each_input_a_corrupt_one_fails_alone(cli, tiny_model, tmp_path):
    inputs = write_folder(tmp_path / "in", {"a": (32, 32), "c": (32, 32)})
    (inputs / "b.png").write_bytes(b"not a png")
    prompts = tmp_path / "p.txt"
    prompts.write_text("--prompt x --image in --denoising_strength 0.5\n--prompt y\n")
    result = cli("batch", prompts, "-m", tiny_model, *STEPS, "-W", "32", "-H", "32", "--seed", "20",
                 "-o", tmp_path / "out", "--json")
    assert result.exit_code == 3, result.stderr
    records = sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["item"])
    assert [(r["item"], r["line"], r["seed"], r["status"], r.get("input")) for r in records] == [
        (0, 1, 20, "done", str(inputs / "a.png")), (1, 1, 21, "failed", str(inputs / "b.png")),
        (2, 1, 22, "done", str(inputs / "c.png")), (3, 2, 23, "done", None)]
    single = cli("img2img", "-i", inputs / "c.png", "--strength", "0.5", "-m", tiny_model, *STEPS, "--seed", "22",
                 "-o", tmp_path / "single", "x")
    assert np.array_equal(pixels(records[2]["path"]), pixels(single.stdout.strip()))


def test_png_info_takes_each_inputs_prompt_seed_and_settings(cli, tiny_model, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from sdcli.io.metadata import parse_infotext, read_infotext

    inputs = write_folder(tmp_path / "in", {"a": (32, 32), "b": (32, 32), "c": (32, 32)})
    for stem, text in (("a", "a lighthouse\nNegative prompt: fog\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 77"),
                       ("c", "x\nSteps: 3, Sampler: No Such Sampler, Seed: 5")):
        info = PngInfo()
        info.add_text("parameters", text)
        Image.open(inputs / f"{stem}.png").save(inputs / f"{stem}.png", pnginfo=info)
    out = tmp_path / "out"
    result = cli("img2img", "-i", inputs, "--png-info", "-m", tiny_model, *STEPS, "--seed", "10", "-n", "blur",
                 "-o", out, "oil")
    assert result.exit_code == 0, result.stderr
    assert f"{inputs / 'b.png'}: no PNG info; using the command's prompt and options" in result.stderr
    assert f"{inputs / 'c.png'}: PNG info not used: --sampler: " in result.stderr
    assert outputs(out) == ["a-77.png", "b-11.png", "c-12.png"]
    prompt, negative, params = parse_infotext(read_infotext(out / "a-77.png"))
    assert (prompt, negative, params["Steps"], params["Sampler"], params["CFG scale"]) == (
        "oil a lighthouse", "blur fog", "3", "Euler", "5")
    prompt, negative, params = parse_infotext(read_infotext(out / "c-12.png"))
    assert (prompt, negative, params["Steps"], params["Sampler"]) == ("oil", "blur", "2", "DPM++ 2M")
    single = cli("img2img", "-i", inputs / "a.png", "-m", tiny_model, "--steps", "3", "--sampler", "Euler",
                 "--cfg-scale", "5", "--seed", "77", "-n", "blur fog", "-o", tmp_path / "single", "oil a lighthouse")
    assert np.array_equal(pixels(out / "a-77.png"), pixels(single.stdout.strip()))


def test_recursive_same_names_in_subfolders_do_not_collide_output_inside_inputs_left_out(cli, tiny_model, tmp_path):
    root = tmp_path / "in"
    write_folder(root / "a", {"cat": (32, 32)}, masks=tmp_path / "masks" / "a")
    write_folder(root / "b", {"cat": (32, 32)}, masks=tmp_path / "masks" / "b")
    out = root / "out"  # inside the input folder: never taken as input, also not on --resume
    args = ("inpaint", "-i", root, "--recursive", "--mask", tmp_path / "masks", "-m", tiny_model, *STEPS,
            "--seed", "1", "-o", out, "x")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert outputs(out) == ["cat-1.png", "cat-2.png"]
    assert [(r["input"], r["mask"]) for r in item_records(out)] == [
        (str(root / d / "cat.png"), str(tmp_path / "masks" / d / "cat.png")) for d in ("a", "b")]
    again = cli(*args, "--resume")
    assert again.exit_code == 0 and again.stdout == "" and outputs(out) == ["cat-1.png", "cat-2.png"]
    flat = cli("inpaint", "-i", root, "--mask", tmp_path / "masks", "-m", tiny_model, "-o", tmp_path / "o", "x")
    assert flat.exit_code == 2 and f"{root} holds no PNG, JPEG or WebP images" in flat.stderr  # only subfolders
