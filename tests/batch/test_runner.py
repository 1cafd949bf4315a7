import json
import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

from sdcli.batch import manifest
from sdcli.batch.parse import BatchFileError
from sdcli.batch.runner import BatchOptions, run_batch
from sdcli.errors import UsageError
from sdcli.io.metadata import parse_infotext, read_infotext
from sdcli.job import generate
from sdcli.job.write import OutputOptions
from sdcli.request.generation import GenerationRequest
from tests.images import nan_weights

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = GenerationRequest(prompt="", steps=2, width=32, height=32)


class Recorder:
    """A reporter that keeps what it is told; `on_step` lets a test act mid-image."""

    def __init__(self, on_step=None):
        self.notes, self.records, self.on_step = [], [], on_step

    def note(self, message):
        self.notes.append(message)

    def start(self, total, steps, completed=0):
        self.started = (total, completed)

    def step(self, step, total):
        if self.on_step:
            self.on_step(len(self.records), step)

    def item(self, record):
        self.records.append(record)


def batch(tmp_path, tiny_model, tiny_pipe, text, out="out", loads=None, reporter=None, **options):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(text)
    loads = [] if loads is None else loads

    def load(model, plan):
        loads.append(model.name)
        return tiny_pipe

    options = {"defaults": FAST, "seed": 100, "model": str(tiny_model),
               "output": OutputOptions(tmp_path / out), **options}
    reporter = reporter or Recorder()
    return run_batch(BatchOptions(prompts, **options), reporter, load=load), reporter


def files(folder):
    """name -> bytes of every file but the manifest (temp files included: there must be none)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != manifest.MANIFEST}


def items(folder):
    return [r for r in manifest.read_records(folder / manifest.MANIFEST) if r["type"] == "item"]


FOUR = "a red fox\nb blue bird\n--prompt c --seed 7\nd dog\n"


def test_groups_by_model_loads_each_once_numbers_in_file_order(tmp_path, tiny_model, tiny_pipe):
    other = shutil.copytree(tiny_model, tmp_path / "other")
    loads = []
    text = (f"--prompt a\n--prompt b --sd_model {other}\n--prompt c --sampler_name 'Euler a'\n"
            f"--prompt d --sd_model {other} --sampler_name DDIM\n--prompt e --sampler_name Heun\n")
    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, text, loads=loads)
    assert loads == ["tiny-sd1", "other"]  # one load per model, although lines alternate
    assert [r["prompt"] for r in reporter.records] == ["a", "c", "e", "b", "d"]  # grouped by model
    assert stats.done == 5 and stats.exit_code == 0
    out = tmp_path / "out"
    by_name = {p.name: parse_infotext(read_infotext(p)) for p in out.glob("*.png")}
    assert [(n, i[0], i[2]["Seed"], i[2]["Sampler"], i[2]["Model"]) for n, i in sorted(by_name.items())] == [
        ("00000-100.png", "a", "100", "DPM++ 2M", "tiny-sd1"), ("00001-101.png", "b", "101", "DPM++ 2M", "other"),
        ("00002-102.png", "c", "102", "Euler a", "tiny-sd1"), ("00003-103.png", "d", "103", "DDIM", "other"),
        ("00004-104.png", "e", "104", "Heun", "tiny-sd1")]
    records = items(out)
    assert [(r["item"], r["line"], r["seed"], r["status"], r["error"]) for r in sorted(records, key=lambda r: r["item"])
            ] == [(i, i + 1, 100 + i, "done", None) for i in range(5)]
    assert all(r["seconds"] >= 0 and os.path.isfile(r["path"]) for r in records)


def test_failed_items_are_recorded_and_the_batch_goes_on(tmp_path, tiny_model, tiny_pipe, monkeypatch):
    real = generate.run

    def flaky(request, *args, **kwargs):
        if request.prompt == "boom":
            raise RuntimeError("CUDA out of memory (simulated)")
        if request.prompt == "nan":  # broken weights: NaN in the decode
            with nan_weights(args[0]):
                yield from real(request, *args, **kwargs)
            return
        yield from real(request, *args, **kwargs)

    monkeypatch.setattr(generate, "run", flaky)
    # One call per line (a joined call's failures: tests/batch/test_joining.py).
    stats, _ = batch(tmp_path, tiny_model, tiny_pipe, "ok one\nboom\nnan\nok two\n", group=1)
    assert (stats.done, stats.failed, stats.exit_code) == (2, 2, 3)
    records = {r["prompt"]: r for r in items(tmp_path / "out")}
    assert records["boom"]["status"] == "failed" and records["boom"]["path"] is None
    assert records["boom"]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert records["nan"]["error"].startswith("NaN/inf in the decoded image")
    assert sorted(files(tmp_path / "out")) == ["00000-100.png", "00003-103.png"]


def test_ctrl_c_finishes_the_current_image_then_resume_completes_bit_identically(tmp_path, tiny_model, tiny_pipe):
    full, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="full", group=1)

    def ctrl_c(done_so_far, step):
        if done_so_far == 1 and step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    # One call per line: Ctrl-C in the second line's call (in a joined call: tests/batch/test_joining.py).
    before = signal.getsignal(signal.SIGINT)
    stopped, reporter = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", reporter=Recorder(ctrl_c), group=1)
    assert stopped.interrupted and stopped.exit_code == 130 and stopped.done == 2
    assert any("Ctrl-C" in n for n in reporter.notes)
    assert sorted(files(tmp_path / "run")) == ["00000-100.png", "00001-101.png"]
    assert signal.getsignal(signal.SIGINT) is before  # handler restored (whatever it was: nohup ignores SIGINT)
    resumed, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", resume=True, seed=None, group=1)
    assert (resumed.done, resumed.skipped, resumed.exit_code) == (2, 2, 0)
    assert files(tmp_path / "run") == files(tmp_path / "full")


def test_resume_after_a_crash_recovers_unrecorded_files_and_clears_temp_files(tmp_path, tiny_model, tiny_pipe):
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="full")
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run")
    run = tmp_path / "run"
    # A crash: item 2's file was linked but never recorded, item 3 never finished,
    # the last record is torn, and a dead process left a temp file.
    lines = (run / manifest.MANIFEST).read_text().splitlines(keepends=True)
    (run / manifest.MANIFEST).write_text("".join(lines[:3]) + lines[3][:25])
    (run / "00003-103.png").unlink()
    (run / ".sdcli-4194999-dead.tmp").write_bytes(b"partial")
    stats, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", resume=True)
    assert (stats.done, stats.skipped, stats.failed) == (1, 3, 0)
    assert files(run) == files(tmp_path / "full")  # same names, same bytes, no temp file, no duplicate
    latest = {r["item"]: r for r in items(run)}
    assert sorted(latest) == [0, 1, 2, 3] and all(r["status"] == "done" for r in latest.values())
    assert latest[2].get("recovered") is True


def test_a_second_run_into_a_batch_folder_needs_resume_and_the_same_plan(tmp_path, tiny_model, tiny_pipe):
    batch(tmp_path, tiny_model, tiny_pipe, "a\n")
    with pytest.raises(UsageError, match="already holds a batch .* pass --resume"):
        batch(tmp_path, tiny_model, tiny_pipe, "a\n")
    with pytest.raises(UsageError, match="--resume: the prompt file .*prompts.txt .* changed since the batch"):
        batch(tmp_path, tiny_model, tiny_pipe, "b\n", resume=True)
    with pytest.raises(UsageError, match="--seed: 5 differs from the base seed 100"):
        batch(tmp_path, tiny_model, tiny_pipe, "a\n", resume=True, seed=5)
    stats, _ = batch(tmp_path, tiny_model, tiny_pipe, "a\n", resume=True)
    assert (stats.done, stats.skipped) == (0, 1)


def test_bad_model_lines_are_reported_before_anything_loads(tmp_path, tiny_model, tiny_pipe):
    loads = []
    with pytest.raises(BatchFileError) as info:
        batch(tmp_path, tiny_model, tiny_pipe, "a\n--prompt b --sd_model ./nope\n--prompt c --model ./nope\n",
              loads=loads)
    assert info.value.problems == [f"{tmp_path}/prompts.txt:{n}: sd_model: no such folder: ./nope" for n in (2, 3)]
    assert loads == [] and not (tmp_path / "out").exists()


def test_random_base_seed_is_reported_and_kept_on_resume(tmp_path, tiny_model, tiny_pipe):
    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, "a\nb\n", seed=None)
    header = manifest.read_records(tmp_path / "out" / manifest.MANIFEST)[0]
    assert f"base seed {header['base_seed']}" in reporter.notes[0]
    assert [r["seed"] for r in reporter.records] == [header["base_seed"], header["base_seed"] + 1]
    json.dumps(header)  # the header is plain JSON
    assert np.asarray(Image.open(reporter.records[0]["path"])).std() > 5


def test_resume_redoes_a_done_record_whose_path_is_null(tmp_path, tiny_model, tiny_pipe):
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="full")
    batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run")
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / manifest.MANIFEST).read_text().splitlines()]
    edited = [{**r, "path": None} if r.get("item") == 1 else r for r in records]
    (run / manifest.MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in edited))
    (run / "00001-101.png").unlink()
    stats, _ = batch(tmp_path, tiny_model, tiny_pipe, FOUR, out="run", resume=True)
    assert (stats.done, stats.skipped, stats.failed) == (1, 3, 0)
    assert files(run) == files(tmp_path / "full")
