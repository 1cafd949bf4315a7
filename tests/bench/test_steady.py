"""The steady bench row pairs `sdcli batch` with the hand-written loop inside one process: every prompt-file
line and one loop image run in turn (order alternating), both write their images, the warm-up pair is
dropped, and the rows compare the pairs in blocks."""


import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import steady  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


class Runner:
    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": root}
        self.calls = 0

    def run(self, cmd):
        self.calls += 1
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return 0.0, proc.stdout


def test_pairs_run_in_one_process_and_both_halves_make_their_images(tmp_path, tiny_model):
    runner = Runner()
    args = argparse.Namespace(images=5, block=2, steps=2, full_steps=2, full_modes="txt2img")
    result = steady.steady(runner, tmp_path, {"tiny": (tiny_model, 32)}, args)
    assert runner.calls == 3  # one process per mode
    for mode in ("txt2img", "img2img", "inpaint"):
        row = result[f"tiny {mode}"]
        assert row["pairs"] == 5 and row["sdcli batch"]["n"] == row["hand-written loop"]["n"] == 5
        assert row["cpu"]["sdcli batch"]["n"] == 5 and row["block"] == 2
        assert len(row["batch vs loop"]["paired_ratios"]) == 2 and row["batch vs loop"]["target"] == 1.05  # 2 blocks
        out = tmp_path / "steady" / f"tiny-{mode}"
        assert len(list((out / "batch").glob("*.png"))) == len(list((out / "loop").glob("*.png"))) == 6


def test_blocks_sum_consecutive_pairs_and_drop_a_short_last_one():
    assert steady.blocks([1, 2, 3, 4, 5], [2, 2, 2, 2, 2], 2) == ([3, 7], [4, 4])
    assert steady.blocks([1, 2, 3], [1, 1, 1], 1) == ([1, 2, 3], [1, 1, 1])
