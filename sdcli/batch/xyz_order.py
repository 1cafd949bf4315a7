"""The order the WebUI's X/Y/Z plot runs its cells in (scripts/xyz_grid.py Script.run, draw_xyz_grid): Z outermost,
then Y, then X, unless one axis is slow to change (a model to load): the costliest runs outermost. The grid is the
same in any order; what an /interrupt leaves blank follows it (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdcli.batch.xyz import Plot

# The WebUI's `cost` of the axes sdcli plots that are slow to change; every other axis costs 0.
AXIS_COST = {"Checkpoint name": 1.0, "Refiner checkpoint": 1.0, "VAE": 0.7}


def nesting(labels: tuple[str, str, str]) -> str:
    """The axes from outermost to innermost ("zyx" unless one costs strictly more than both others: it goes first,
    then whichever of the other two costs strictly more, else the WebUI's fallback for that first axis)."""
    x, y, z = (AXIS_COST.get(label, 0.0) for label in labels)
    if x > y and x > z:
        return "xyz" if y > z else "xzy"
    if y > x and y > z:
        return "yxz" if x > z else "yzx"
    if z > x and z > y:
        return "zxy" if x > y else "zyx"
    return "zyx"


def run_order(plot: Plot) -> list[int]:
    """The index in plot.lines of each cell (x + y*nx + z*nx*ny, batch.xyz.Plot.cell) in the order the WebUI runs
    them."""
    sizes = dict(zip("xyz", plot.shape, strict=True))
    order = nesting(tuple(spec.axis.label for spec in plot.axes))  # type: ignore[arg-type]
    cells = []
    for a in range(sizes[order[0]]):
        for b in range(sizes[order[1]]):
            for c in range(sizes[order[2]]):
                at = dict(zip(order, (a, b, c), strict=True))
                cells.append(plot.cell(at["x"], at["y"], at["z"]))
    return cells
