import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from sdcli.batch import manifest
from sdcli.batch.parse import KEYS

FAST = ("--steps", "2", "--width", "32", "--height", "32")
pytestmark = pytest.mark.usefixtures("single_thread")
PROMPTS = "".join(f"prompt number {n}, (detail:1.1)\n" for n in range(16))


def outputs(folder):
    """name -> bytes of every file but the manifest (so stray temp files would show)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != manifest.MANIFEST}


def item_records(folder, drop=("seconds", "process", "path")):
    records = [r for r in manifest.read_records(folder / manifest.MANIFEST) if r["type"] == "item"]
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in records), key=lambda r: r["item"])


def test_bad_lines_exit_2_all_listed_nothing_loaded_or_written(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a: pytest.fail("a model was loaded"))
    prompts = tmp_path / "p.txt"
    prompts.write_text("ok\n--prompt x --steps 0\nfine\n--prompt y --width 63 --bogus 1\n")
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {prompts}: 2 bad line(s), nothing was run:",
        f"{prompts}:2: steps: 0 is out of range; use 1 to 1000",
        f"{prompts}:4: unknown key 'bogus' (keys: {', '.join(k.name for k in KEYS)})",
    ]
    assert not (tmp_path / "out").exists()


def test_json_records_summary_table_and_contact_sheet(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a lighthouse at dusk, long prompt text here"}\n'
                       '{"prompt": "b", "batch_size": 2, "seed": 40}\n')
    out = tmp_path / "out"
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "--seed", "9", "-o", out, "--json", "--grid")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["item"], r["line"], r["seed"], r["status"]) for r in records] == [
        (0, 1, 9, "done"), (1, 2, 40, "done"), (2, 2, 41, "done")]
    assert [os.path.basename(r["path"]) for r in records] == ["00000-9.png", "00001-40.png", "00002-41.png"]
    summary = result.stderr[result.stderr.index("done"):]
    assert "skipped" in summary and "failed" in summary and "images/s" in summary
    assert "contact sheet:" in result.stderr
    sheet = Image.open(out / "grid.png")
    assert sheet.size == (2 * (128 + 4) + 4, 2 * (128 + 2 * 16 + 4 + 4) + 4)  # 2x2 cells, 2 label lines
    label = np.asarray(sheet.convert("L"))[4 + 128 + 2: 4 + 128 + 34, 4: 132]
    assert (label < 128).sum() > 50, "label text under the first image"
    again = cli("grid", out / "manifest.jsonl", "-o", tmp_path / "sheet.png", "--columns", "3")
    assert again.exit_code == 0 and again.stdout.strip() == str(tmp_path / "sheet.png")
    assert Image.open(tmp_path / "sheet.png").size == (3 * 132 + 4, 1 * 168 + 4)
    assert cli("grid", tmp_path / "nope.jsonl").exit_code == 2


def test_terminal_shows_item_bar_with_failures_above_step_bar(cli, tiny_model, tmp_path, monkeypatch):
    from rich.console import Console

    import sdcli.cli.ui as ui
    import sdcli.job.generate as generate

    screen = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=screen, force_terminal=True, width=150, no_color=True,
                                               highlight=False))
    real = generate.run

    def flaky(request, *args, **kwargs):
        if request.prompt == "boom":
            raise RuntimeError("simulated")
        yield from real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", flaky)
    prompts = tmp_path / "p.txt"
    prompts.write_text("boom\nok\n")
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "--seed", "1", "-o", tmp_path / "out")
    assert result.exit_code == 3
    text = screen.getvalue()
    assert "items" in text and "steps" in text and "1 failed" in text and "eta" in text
    assert text.index("items") < text.index("steps")
    assert "item 0 (line 1, seed" in text and "failed: RuntimeError: simulated" in text
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["00001-2.png"]
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "00001-2.png")]


def test_sigkill_then_resume_gives_the_uninterrupted_files(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text(PROMPTS)
    args = [prompts, "-m", tiny_model, "--steps", "6", "--width", "32", "--height", "32", "--seed", "5"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sdcli", "batch", *map(str, args), "-o", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / manifest.MANIFEST).exists() and len(item_records(run)) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed_with = len(list(run.glob("*.png")))
    assert 2 <= killed_with < 16, "the kill must land mid-batch"

    resumed = cli("batch", *args, "-o", run, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    full = cli("batch", *args, "-o", tmp_path / "full")
    assert full.exit_code == 0
    assert outputs(run) == outputs(tmp_path / "full")  # same names and bytes; no duplicate, no temp file
    assert len(outputs(run)) == 16
    latest = {r["item"]: r for r in item_records(run, drop=())}
    assert sorted(latest) == list(range(16)) and {r["status"] for r in latest.values()} == {"done"}


def test_two_processes_with_accelerate_equal_one_process(cli, tiny_model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n--prompt c --batch_size 2\n--prompt d --sampler_name 'Euler a'\ne\n")
    args = [prompts, "-m", tiny_model, *FAST, "--seed", "3", "--device", "cpu"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    proc = subprocess.run([*launch, "-m", "sdcli", "batch", *map(str, args), "-o", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    two = tmp_path / "two"
    assert not list(two.glob("manifest.part*")), "part manifests are merged at the end"
    assert {r["process"] for r in manifest.read_records(two / manifest.MANIFEST) if r["type"] == "item"} == {0, 1}

    one = cli("batch", *args, "-o", tmp_path / "one")  # one thread, as each launched process runs
    assert one.exit_code == 0
    assert outputs(two) == outputs(tmp_path / "one") and len(outputs(two)) == 6
    assert item_records(two) == item_records(tmp_path / "one")


def test_ctrl_c_exits_130_after_writing_the_current_image(cli, tiny_model, tmp_path, monkeypatch):
    import sdcli.job.generate as generate

    real, calls = generate.run, []

    def ctrl_c_in_second_image(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while this image is being made
        yield from real(*args, **kwargs)

    monkeypatch.setattr(generate, "run", ctrl_c_in_second_image)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\nc\n")
    # One call per line (Ctrl-C inside a joined call: tests/batch/test_joining.py).
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "--seed", "1", "--group", "1", "-o", tmp_path / "out")
    assert result.exit_code == 130
    assert "batch (interrupted)" in result.stderr
    assert f"note: to continue: sdcli batch --resume -o {tmp_path / 'out'}" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000-1.png", "00001-2.png", "manifest.jsonl"]
    assert [r["item"] for r in item_records(tmp_path / "out")] == [0, 1]


def test_resume_needs_only_the_folder_and_names_real_differences(cli, tiny_model, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model, tmp_path / "m")
    (tmp_path / "p.txt").write_text("a\nb\nc\n")
    first = cli("batch", "p.txt", "-m", "./m", *FAST, "--seed", "4", "--sampler", "Euler", "-o", "out")
    assert first.exit_code == 0, first.stderr
    (tmp_path / "out" / "00001-5.png").unlink()
    changed = cli("batch", "--resume", "-o", "out", "--steps", "3", "--sampler", "Euler", "--cfg-scale", "5")
    assert changed.exit_code == 2
    assert changed.stderr.strip() == (
        "error: --resume: the batch in out was started with other options: --steps: 2 in the manifest, 3 now; "
        "--cfg-scale: 7.0 in the manifest, 5.0 now (leave them out to keep the recorded ones)")
    same_model = cli("batch", "--resume", "-o", "out", "-m", "m", "--json")  # ./m and m: the same model
    assert same_model.exit_code == 0, same_model.stderr
    assert [json.loads(line)["seed"] for line in same_model.stdout.splitlines()] == [5]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["00000-4.png", "00001-5.png", "00002-6.png"]
    nothing = cli("batch", "--resume", "-o", "elsewhere")
    assert nothing.exit_code == 2 and "elsewhere holds no batch to resume" in nothing.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_grid_into_a_new_folder(cli, tiny_model, tmp_path):
    """`sdcli grid -o new/sheet.png` makes the folder (it used to exit 1 with a FileNotFoundError)."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    assert cli("batch", prompts, "-m", tiny_model, *FAST, "--seed", "1", "-o", tmp_path / "out").exit_code == 0
    result = cli("grid", tmp_path / "out" / "manifest.jsonl", "-o", tmp_path / "new" / "sub" / "sheet.png")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "new" / "sub" / "sheet.png")
    assert (tmp_path / "new" / "sub" / "sheet.png").is_file()
    blocked = tmp_path / "file"
    blocked.write_text("x")
    refused = cli("grid", tmp_path / "out" / "manifest.jsonl", "-o", blocked / "sheet.png")
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --output:")
    assert len(refused.stderr.splitlines()) == 1


def test_lines_models_are_checked_before_any_load(cli, tiny_model, tiny_xl, tmp_path, monkeypatch):
    """A line's hires upscaler and its refiner (found, and paired with the line's model) are planned before
    anything loads, as a one-shot command plans them: one bad line refuses the file, nothing is written."""
    from sdcli.models import loader

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loader, "load_model", no_load)
    prompts = tmp_path / "p.txt"
    prompts.write_text('--prompt "a cat"\n--prompt "a dog" --enable_hr true --hr_upscaler "Nonexistent"\n'
                       f'--prompt "a fox" --refiner_checkpoint "{tiny_xl["refiner"]}"\n', encoding="utf-8")
    result = cli("batch", prompts, "-m", tiny_model, *FAST, "--seed", "1", "-o", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert f"{prompts}:2: hr_upscaler: 'Nonexistent' is neither an upscaler" in result.stderr
    assert f"{prompts}:3: refiner_checkpoint: " in result.stderr and "SDXL" in result.stderr
    assert not (tmp_path / "out").exists()
