"""What the AUTOMATIC1111 WebUI's selectable scripts answer through the API (their Processed's info lists, the
X/Y/Z plot's grid infotext and its order of cells): transcribed by hand from v1.10 as facts and small functions
(imports nothing from sdcli).

Sources: scripts/prompts_from_file.py (Script.run), scripts/sd_upscale.py (Script.run), scripts/xyz_grid.py
(axis_options' cost, Script.run's cell and its axis order, draw_xyz_grid), modules/processing.py (Processed.__init__,
process_images_inner, create_infotext), modules/infotext_utils.py (quote).

Facts:

- Processed(p, images, seed, info, ...) takes all_seeds / all_negative_prompts / all_subseeds from its arguments,
  else p's lists (set only on a p that process_images ran on), else [seed] / [p.negative_prompt] / [subseed],
  subseed -1 when not given.
- Prompts from file: each line runs on copy.copy(p), so the script's p keeps no lists: its answer has
  all_seeds [p.seed], all_negative_prompts [p.negative_prompt], all_subseeds [-1]. p.seed is fixed only with
  "iterate seed" or "same seed for all lines" (else it stays -1); with "iterate seed" it moves on after each
  line by p.batch_size * p.n_iter, the request's, whatever the line sets. Its other keys (steps, cfg_scale,
  width, height, batch_size, subseed_strength) are p's, the request's, not a line's; p never ran, so its
  sd_model_name, sd_model_hash, sd_vae_name and sd_vae_hash stay None (StableDiffusionProcessing's defaults).
- SD upscale: fix_seed(p) first; every tile batch runs process_images on p itself, so the answer's all_* lists
  are the last batch's: batch_size images from that batch's seed (seed + n for upscaled image n, plus 1 per batch
  before it: batch i's seed is the previous batch's first seed + 1). The Processed's seed is the fixed seed, its
  subseed -1; infotexts: the first tile batch's info for each upscaled image. "SD upscale overlap" and "SD upscale
  upscaler" are extra_generation_params: written before Version, as any extra key.
- X/Y/Z grid infotext: cell (0, 0, iz)'s p after it ran, with extra_generation_params "Script": "X/Y/Z plot",
  then for X and Y (each not Nothing) "X Type" (the axis label), "X Values" (the values text as given), and for a
  Seed or Var. seed axis without "Keep -1 for seeds" "Fixed X Values" (", ".join of the values, -1 fixed). The
  main grid's (cell (0, 0, 0)) adds the Z keys the same way; a sub grid's has no Z keys. A cell that did not run
  (after an interrupt) sets none: its grid's infotext stays None. Values with ',' ':' or a newline are
  JSON-quoted (quote).
- X/Y/Z cell order: z outermost, then y, then x, unless one axis costs strictly more than both others
  (Checkpoint name 1.0, Refiner checkpoint 1.0, FP8 mode 0.9, VAE 0.7, UniPC Order 0.5, others 0): it runs
  outermost, then the one of the other two that costs strictly more, on a tie z when x is first, z when y is
  first, y when z is first (axis_order). Seeds are fixed before any cell runs and the grid is drawn by cell
  index, so pixels do not depend on the order; which cells an /interrupt leaves blank does.
"""

from __future__ import annotations

import json
from typing import Any

COST = {"Checkpoint name": 1.0, "Refiner checkpoint": 1.0, "FP8 mode": 0.9, "VAE": 0.7, "UniPC Order": 0.5}
SEED_AXES = ("Seed", "Var. seed")


def prompt_seeds(seed: int, own: list[int | None], iterate: bool, per_request: int) -> tuple[list[int], int]:
    """Each line's seed (`own`: the line's --seed, None for none) and the script's p.seed after the last line;
    `per_request`: the request's batch_size * n_iter."""
    seeds = []
    for line_seed in own:
        seeds.append(seed if line_seed is None else line_seed)
        if iterate:
            seed = seed + per_request
    return seeds, seed


def sd_upscale_seeds(seed: int, count: int, tiles: int, batch_size: int) -> tuple[list[list[int]], list[int]]:
    """(each upscaled image's tile seeds, the answer's all_seeds): batch i of image n starts at seed + n + i and
    its images take that + 0, 1, ...; all_seeds: the last batch's, batch_size of them."""
    batches = -(-tiles // batch_size)
    per_image = [[seed + n + k // batch_size + k % batch_size for k in range(tiles)] for n in range(count)]
    last = seed + (count - 1) + (batches - 1)
    return per_image, [last + x for x in range(batch_size)]


def quote(value: Any) -> str:
    """modules/infotext_utils.quote."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def grid_keys(axes: list[tuple[str, str, list[Any]]], keep_random_seeds: bool, main: bool) -> dict[str, Any]:
    """The keys a grid's infotext adds to its first cell's: `axes` (label, values text, values) for x, y, z."""
    keys: dict[str, Any] = {"Script": "X/Y/Z plot"}
    for name, (label, text, values) in zip("XYZ", axes, strict=True):
        if label == "Nothing" or (name == "Z" and not main):
            continue
        keys[f"{name} Type"] = label
        keys[f"{name} Values"] = text
        if label in SEED_AXES and not keep_random_seeds:
            keys[f"Fixed {name} Values"] = ", ".join(str(v) for v in values)
    return keys


def axis_order(labels: tuple[str, str, str]) -> tuple[str, str]:
    """(first_axes_processed, second_axes_processed) of Script.run from the three axes' labels."""
    x, y, z = (COST.get(label, 0.0) for label in labels)
    first, second = "z", "y"
    if x > y and x > z:
        first, second = "x", "y" if y > z else "z"
    elif y > x and y > z:
        first, second = "y", "x" if x > z else "z"
    elif z > x and z > y:
        first, second = "z", "x" if x > y else "y"
    return first, second


def cell_order(labels: tuple[str, str, str], shape: tuple[int, int, int]) -> list[int]:
    """The cells (x + y*nx + z*nx*ny) in the order draw_xyz_grid runs them."""
    first, second = axis_order(labels)
    third = next(a for a in "xyz" if a not in (first, second))
    nx, ny, nz = shape
    size = {"x": nx, "y": ny, "z": nz}
    order = []
    for a in range(size[first]):
        for b in range(size[second]):
            for c in range(size[third]):
                at = {first: a, second: b, third: c}
                order.append(at["x"] + at["y"] * nx + at["z"] * nx * ny)
    return order
