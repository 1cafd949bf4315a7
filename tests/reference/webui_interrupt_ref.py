"""What the AUTOMATIC1111 WebUI API answers when POST /sdapi/v1/interrupt comes during a request, a script's
included: transcribed by hand from v1.10 as facts and small functions (imports nothing from sdcli).

Sources: modules/api/api.py (text2imgapi, img2imgapi), modules/shared_state.py (State.begin, interrupt, skip),
modules/processing.py (process_images_inner, Processed), scripts/xyz_grid.py (draw_xyz_grid, Script.run's
cell), scripts/prompts_from_file.py (Script.run), scripts/sd_upscale.py (Script.run).

Facts:

- The flag's lifetime. /interrupt sets shared.state.interrupted; /skip sets shared.state.skipped. Only
  State.begin clears `interrupted`, and the API calls it once per request (inside its queue lock, before
  process_images or the selectable script's run); State.end leaves it set, so /progress reports
  interrupted: true until the next request begins. `skipped` is also cleared by process_images_inner at the
  start of every batch: a skip ends one batch, an interrupt the rest of the request.
- process_images after an interrupt: p.all_prompts / all_negative_prompts / all_seeds / all_subseeds are filled
  for every image asked for before the batch loop; each batch starts with `if state.interrupted: break`; the
  batch running when the interrupt came is decoded from its latest latent and kept. With no image made the
  infotexts list gets one entry anyway (Processed(p, []).infotext(p, 0): image 0 as asked). The Processed's
  all_* lists are p's: every image asked for, made or not; infotexts only the images made (or that one).
- The API answers 200 with images = processed.images (base64, when send_images) and info = processed.js().
- X/Y/Z plot: a cell that starts after the interrupt returns Processed(p, [], p.seed, "") without calling
  process_images. Its place in the grid is Image.new(mode, size) of the first cell's image (black), and its
  entries in all_prompts / all_seeds / infotexts stay None (JSON null). The grid is drawn and returned; "include
  lone images" returns the blank cells too. all_prompts / all_seeds: per cell (led by each Z grid's first
  cell's with "include sub grids", one Z value too: draw_xyz_grid always inserts the Z grids, the main grid
  before them, and run() drops them only without sub grids); infotexts: the grid's (and sub grids') then per cell,
  whether or not lone images are returned; all_negative_prompts / all_subseeds: the first cell's Processed's;
  index_of_first_image: 1. The cells run Z-outer, then Y, then X (when no axis costs more: a checkpoint axis
  runs outermost).
- Prompts from file or textbox: no interrupt check of its own; each later line's process_images runs and makes
  nothing. images: every line's images; all_prompts: every line's all_prompts (its images asked for, made or
  not); infotexts: every line's infotexts (so one for each line that made nothing); all_seeds: [p.seed] (the
  script's p, its seed after "iterate seed" steps), all_negative_prompts: [p.negative_prompt],
  all_subseeds: [-1].
- SD upscale: no interrupt check of its own; each later tile's process_images runs and makes nothing, and a
  tile with no image is Image.new("RGB", (width, height)) (black) when the tiles are combined. Every n_iter
  upscaled image comes back; infotexts: the first tile's infotext for each; all_seeds: the last tile's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Infotext = tuple[int, int]  # (job, image): the infotext of that job's image as asked


@dataclass(frozen=True)
class Job:
    """One process_images call: the images it asked for (prompt, negative prompt, seed, subseed of each) and how
    many it made before the interrupt (0: it began after it). A batch is made whole or not at all."""

    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    made: int


@dataclass
class Processed:
    """The fields of a Processed the answer's images and info come from. An image is ("made", job, index),
    ("blank",) or ("grid", n); an infotext (job, index) or None."""

    images: list[tuple[Any, ...]]
    infotexts: list[Infotext | None]
    all_prompts: list[str | None]
    all_negative_prompts: list[str | None]
    all_seeds: list[int | None]
    all_subseeds: list[int | None]
    index_of_first_image: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def process_images(job: Job, number: int = 0) -> Processed:
    """process_images_inner with an interrupt: the images made, every image asked for in the all_* lists."""
    made = [("made", number, i) for i in range(job.made)]
    infotexts: list[Infotext | None] = [(number, i) for i in range(job.made)] or [(number, 0)]
    return Processed(made, infotexts, list(job.prompts), list(job.negative_prompts), list(job.seeds),
                     list(job.subseeds))


def prompts_from_file(jobs: list[Job], seed: int, negative_prompt: str) -> Processed:
    """The script's answer: every line's images, prompts and infotexts joined; `seed`: the script's p.seed at
    the end (moved on by "iterate seed"), `negative_prompt`: the request's."""
    lines = [process_images(job, n) for n, job in enumerate(jobs)]
    return Processed([i for line in lines for i in line.images], [t for line in lines for t in line.infotexts],
                     [p for line in lines for p in line.all_prompts], [negative_prompt], [seed], [-1])


def xyz_plot(cells: list[Job | None], shape: tuple[int, int, int], lone: bool = False,
             sub: bool = False) -> Processed:
    """The X/Y/Z plot's answer; `cells` in cell order (x + y*nx + z*nx*ny), None for a cell that began after
    the interrupt (its Processed has no image), `shape` (nx, ny, nz)."""
    nx, ny, nz = shape
    runs = [process_images(job, n) if job is not None and job.made else None for n, job in enumerate(cells)]
    first = next(job for job in cells if job is not None)
    images: list[tuple[Any, ...]] = [run.images[0] if run else ("blank",) for run in runs]
    prompts = [cells[n].prompts[0] if run else None for n, run in enumerate(runs)]  # type: ignore[union-attr]
    seeds = [cells[n].seeds[0] if run else None for n, run in enumerate(runs)]  # type: ignore[union-attr]
    infotexts = [run.infotexts[0] if run else None for run in runs]
    starts = [z * nx * ny for z in range(nz)] if sub else []
    grids: list[tuple[Any, ...]] = [("grid", 0)] + [("grid", 1 + z) for z in range(nz) if sub]
    return Processed(grids + (images if lone else []), [(-1, g) for g in range(len(grids))] + infotexts,
                     [prompts[n] for n in starts] + prompts, list(first.negative_prompts),
                     [seeds[n] for n in starts] + seeds, list(first.subseeds), index_of_first_image=1)


def sd_upscale(tiles: list[list[Job]]) -> Processed:
    """The SD upscale answer; `tiles[n]`: the tile jobs of upscaled image n (batch size 1 each). A tile with no
    image is black in its combined image (Processed.extra["blank_tiles"][n]: those tiles)."""
    combined = [("combined", n) for n in range(len(tiles))]
    last = tiles[-1][-1]
    blank = [[k for k, job in enumerate(row) if not job.made] for row in tiles]
    return Processed(combined, [(0, 0)] * len(tiles), list(last.prompts), list(last.negative_prompts),
                     list(last.seeds), list(last.subseeds), extra={"blank_tiles": blank})
