"""Progress that tells the truth: loading as a stage, it/s, an ETA that moves within an image, plain lines in logs."""

import io
import re
import time

import pytest
from rich.console import Console

from sdcli.cli import ui

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = ("--steps", "3", "--width", "32", "--height", "32", "--seed", "2")


def test_logs_get_a_loading_stage_and_plain_progress_lines(cli, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "PLAIN_INTERVAL", 0.0)
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path / "a")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "loading model tiny-sd1 …" and re.fullmatch(r"loading model tiny-sd1: done in \d+\.\d s",
                                                                     lines[1])
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress[0].startswith("progress: images 1/1, step 1/3, eta")
    assert re.fullmatch(r"progress: images 1/1, step 3/3, \d+\.\d\d it/s, eta \d+ s", progress[-1])
    quiet = cli("txt2img", "x", "-m", tiny_model, *FAST, "-o", tmp_path / "b", "-q")
    assert quiet.stderr == ""


def test_plain_lines_come_at_a_modest_rate(cli, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "PLAIN_INTERVAL", 3600.0)
    result = cli("txt2img", "x", "-m", tiny_model, *FAST, "--count", "2", "-o", tmp_path)
    assert result.exit_code == 0 and "progress:" not in result.stderr


def test_terminal_bars_show_it_per_second_and_the_eta_moves_within_an_image(monkeypatch):
    monkeypatch.setattr(ui, "console", Console(file=io.StringIO(), force_terminal=True, width=120))
    with ui.CliReporter() as reporter:
        reporter.start(2, 4)
        images, steps = reporter.progress.tasks
        reporter.step(1, 4)
        time.sleep(0.02)
        reporter.step(2, 4)
        assert images.completed == 0.5 and steps.completed == 2
        assert re.fullmatch(r"\d+\.\d\d it/s", steps.fields["rate"])
        reporter._advance()
        assert images.completed == 1 and steps.completed == 0


def test_a_batch_size_2_item_shares_the_time_of_its_pair(tmp_path, tiny_model, tiny_pipe):
    from tests.batch.test_runner import Recorder, batch

    stats, reporter = batch(tmp_path, tiny_model, tiny_pipe, "--prompt pair --batch_size 2\n",
                            reporter=Recorder(on_step=lambda done, step: time.sleep(0.05)))
    first, second = (r["seconds"] for r in reporter.records)
    assert stats.done == 2 and first > 0.05 and second > 0.05  # each gets its half of the one pipeline call
    assert abs(first - second) < 0.5 * max(first, second)


def test_fetching_from_the_hub_is_a_stage(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "PLAIN_INTERVAL", 0.0)
    result = cli("txt2img", "x", "-m", "someone/missing-model", "--offline", "-o", tmp_path / "o")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "fetching someone/missing-model from the hub …"
    assert lines[1].startswith("error: --model: someone/missing-model is not in the local hub cache and offline")
