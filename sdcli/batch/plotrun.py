"""Running an X/Y/Z plot: its cells as a batch (manifest, --resume, fault isolation), then its grids.

Grids: `xyz_grid-0000.png` for each Z value (X across, Y down) and, with more than one
Z value, `xyz_grid.png` with the Z grids side by side (the WebUI's main grid). A grid's
PNG infotext is its first finished cell's, plus the WebUI's plot keys (Script, X Type,
X Values, ...), so `sdcli info` shows what was plotted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcli.batch import manifest
from sdcli.batch.plan import BatchOptions
from sdcli.batch.plotgrid import cell_grid, combined_grid, grid_infotext, save_grid
from sdcli.batch.xyz import Plot

GRID_NAME = "xyz_grid"


def run_plot(plot: Plot, options: BatchOptions, reporter: Any, *, legend: bool = True,
             load: Callable[[Any, Any], Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Run every cell of `plot` (options.lines) as one batch, then draw its grids; (stats, grid records)."""
    from sdcli.batch.runner import run_batch

    stats = run_batch(options, reporter, load)
    if stats.interrupted or stats.process != 0 or stats.folder is None:
        return stats, []
    return stats, write_grids(plot, stats.folder, legend=legend, replace_existing=options.resume)


def free_folder(root: Path) -> Path:
    """The first outputs/xyz-NNNN that does not exist yet (a plot's default --output)."""
    return next(root / f"xyz-{n:04d}" for n in range(100000) if not (root / f"xyz-{n:04d}").exists())


def cell_assets(assets: Any, vae: str | None) -> Any:
    """The add-on options of a cell of a VAE axis: Automatic = --vae's, None = the model's own, else that VAE."""
    from dataclasses import replace

    from sdcli.batch.xyz import VAE_DEFAULT, VAE_NONE

    if vae is None or vae.lower() == VAE_DEFAULT:
        return assets
    return replace(assets, vae=None if vae.lower() == VAE_NONE else vae)


def check_model(spec: str, offline: bool, assets: Any) -> None:
    """A Checkpoint name value resolved as --model would be (files checked, nothing loaded)."""
    from sdcli.models.resolve import resolve_model

    resolve_model(spec, offline=offline, library=assets.library(), allow_pickle=assets.allow_pickle)


def upscaler_resolver(assets: Any) -> Callable[[str], str]:
    """A Hires upscaler value -> what a cell runs with: a built-in name, or a file's absolute path (one found
    in the models folder's ESRGAN/ too), checked as --hires-upscaler is; each value resolved once."""
    from functools import cache

    from sdcli.models.upscalers import resolve_upscaler

    @cache
    def resolve(spec: str) -> str:
        ref = resolve_upscaler(spec, "--hires-upscaler", assets.library(), assets.allow_pickle)
        return ref.path or ref.name

    return resolve


def _cell_paths(folder: Path) -> dict[int, Path]:
    """Item number -> image file of every finished cell in the manifest."""
    _, items = manifest.load(folder)
    paths = {}
    for item, record in manifest.done_items(items).items():
        path = Path(record["path"])
        paths[item] = path if path.is_file() else folder / path.name
    return paths


def write_grids(plot: Plot, folder: Path, *, legend: bool = True,
                replace_existing: bool = False) -> list[dict[str, Any]]:
    """Draw and write the plot's grids from the finished cells on disk; one record per grid."""
    from PIL import Image

    paths = _cell_paths(folder)
    if not paths:
        return []
    sizes = []
    for path in paths.values():
        with Image.open(path) as im:
            sizes.append(im.size)
    size = (max(w for w, _ in sizes), max(h for _, h in sizes))
    (x, y, z), (nx, ny, nz) = plot.axes, plot.shape
    records, written = [], []
    for iz in range(nz):
        cells = [paths.get(plot.cell(ix, iy, iz)) for iy in range(ny) for ix in range(nx)]
        image = cell_grid(cells, nx, size, x.labels, y.labels, legend)
        infotext = _infotext(plot, cells, combined=nz == 1)
        path = save_grid(image, folder, f"{GRID_NAME}-{iz:04d}", infotext, replace_existing)
        written.append(path)
        records.append({"type": "grid", "path": str(path), "z": iz, "width": image.width, "height": image.height,
                        "cells": len(cells), "missing": sum(c is None for c in cells)})
    if nz > 1:
        cells = [paths.get(n) for n in range(nx * ny * nz)]
        image = combined_grid(written, z.labels, legend)
        path = save_grid(image, folder, GRID_NAME, _infotext(plot, cells, combined=True), replace_existing)
        records.append({"type": "grid", "path": str(path), "z": None, "width": image.width, "height": image.height,
                        "cells": len(cells), "missing": sum(c is None for c in cells)})
    return records


def _infotext(plot: Plot, cells: list[Path | None], combined: bool) -> str:
    """The first finished cell's infotext with the plot's keys added (the WebUI's grid infotext)."""
    from sdcli.io.metadata import read_infotext

    first = next((c for c in cells if c is not None), None)
    return grid_infotext(read_infotext(first) if first else None, plot, combined)
