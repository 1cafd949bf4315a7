"""batch.xyz_order runs the cells in the WebUI's order (tests/reference/webui_scripts_ref.py's transcription of
xyz_grid.py's axis costs and loops), for every mix of costly and cheap axes."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from sdcli.batch.xyz_order import run_order
from tests.reference import webui_scripts_ref as ref

LABELS = ("Steps", "CFG Scale", "VAE", "Checkpoint name", "Refiner checkpoint")


def plot(labels: tuple[str, str, str], shape: tuple[int, int, int]) -> SimpleNamespace:
    """What run_order reads of a batch.xyz.Plot: its axes' labels, its shape and its cell numbering."""
    nx, ny, _ = shape
    axes = tuple(SimpleNamespace(axis=SimpleNamespace(label=label)) for label in labels)
    return SimpleNamespace(axes=axes, shape=shape, cell=lambda ix, iy, iz: ix + iy * nx + iz * nx * ny)


@pytest.mark.parametrize("labels", list(itertools.product(LABELS, repeat=3)), ids="/".join)
def test_cells_run_in_the_webuis_order(labels):
    shape = (2, 3, 4)
    order = run_order(plot(labels, shape))  # type: ignore[arg-type]
    assert order == ref.cell_order(labels, shape) and sorted(order) == list(range(24))


def test_a_checkpoint_axis_runs_outermost_and_the_default_is_z_y_x():
    assert run_order(plot(("Steps", "CFG Scale", "Steps"), (2, 2, 1))) == [0, 1, 2, 3]  # type: ignore[arg-type]
    assert run_order(plot(("Checkpoint name", "CFG Scale", "Steps"), (2, 2, 1))) == [0, 2, 1, 3]  # type: ignore[arg-type]
