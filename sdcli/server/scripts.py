"""The WebUI's built-in selectable scripts that map onto sdcli features, run as requests through the one job
pipeline (each job is an ordinary server generation: same checks, same queue, same pixels).

- "prompts from file or textbox" (txt2img, img2img): script_args [iterate seed, same seed for all lines,
  ("start"|"end"), text]; each line is a prompt or the WebUI's `--key value` pairs, read by sdcli's prompt-file
  parser (batch.parse, "webui" format) over the request; a line's prompt joins the request's at the start or end,
  as the WebUI's script does. Keys naming files (images, masks) are refused: the server opens no path a request
  names.
- "sd upscale" (img2img): script_args [info, overlap, upscaler (name or index of /sdapi/v1/upscalers), scale]:
  the input upscaled with sdcli upscale's code, cut into request-sized tiles overlapping by `overlap`, each tile
  an img2img job (tile k: seed + k with batch size 1), the results blended back (io.tiles).
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError
from sdcli.io.metadata import with_params
from sdcli.request.generation import MAX_SEED, GenerationRequest
from sdcli.server.outcome import asked

Generate = Callable[[GenerationRequest], Any]  # a request -> server.engine.Generated (the server's own checks)


def _prompts_args(args: list[Any]) -> tuple[bool, bool, str, str]:
    """(iterate seed, same seed for all lines, prompt position, text) from either WebUI version's script_args."""
    flags = [a for a in args if isinstance(a, bool)]
    texts = [a for a in args if isinstance(a, str)]
    if not texts:
        raise UsageError("script_args: prompts from file or textbox needs the prompts text (its last argument)")
    position = texts[0] if len(texts) > 1 and texts[0] in ("start", "end") else "start"
    iterate, same = (flags + [False, False])[:2]
    return iterate, same, position, texts[-1]


def _joined(line: str, base: str, position: str) -> str:
    if not line or not base:
        return line or base
    return f"{line} {base}" if position == "start" else f"{base} {line}"


def prompt_lines(base: GenerationRequest, args: list[Any]) -> tuple[list[tuple[GenerationRequest, str | None]], int]:
    """The request of each line (and the model it names), seeds as the WebUI's script sets them; and the script's
    seed after the last line (-1: random, each line's own), as its answer reports it."""
    from sdcli.batch.keys import KEYS
    from sdcli.batch.parse import READERS, BatchFileError, parse_file

    iterate, same, position, text = _prompts_args(args)
    paths = {name for key in KEYS if key.is_path for name in (key.name, *key.aliases)}
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    for number, line in enumerate(kept, start=1):
        try:
            pairs = READERS["webui"](line)
        except ValueError:
            continue  # parse_file reports it
        named = sorted(set(pairs) & paths)
        if named:
            raise UsageError(f"script_args: line {number}: {named[0]} names a file; the server reads no files a "
                             "request names")
    with tempfile.TemporaryDirectory(prefix="sdcli-serve-") as folder:
        path = Path(folder) / "prompts.txt"
        path.write_text("\n".join(kept), encoding="utf-8")
        try:
            lines = parse_file(path, "webui", defaults=replace(base, prompt=""))
        except BatchFileError as exc:  # every bad line, "FILE:LINE: reason" -> "line LINE: reason"
            problems = "; ".join("line " + p.removeprefix(f"{path}:") for p in exc.problems)
            raise UsageError(f"script_args: {problems}") from None
        except UsageError as exc:
            raise UsageError("script_args: " + str(exc).replace(str(path), "the prompts text")) from None
    seed = base.seed
    if (iterate or same) and seed is None:
        seed = random.randrange(MAX_SEED)
    out = []
    for parsed in lines:
        request = parsed.request
        request = replace(request, prompt=_joined(request.prompt, base.prompt, position),
                          negative_prompt=_joined(request.negative_prompt, base.negative_prompt, position)
                          if request.negative_prompt != base.negative_prompt else base.negative_prompt)
        if request.seed == base.seed:  # the line sets no seed of its own
            request = replace(request, seed=seed)
        out.append((request, parsed.model))
        if iterate and seed is not None:  # by the request's batch size x n_iter, whatever the line sets
            seed = (seed + base.total_images) % (MAX_SEED + 1)
    return out, -1 if seed is None else seed


def run_prompts(base: GenerationRequest, args: list[Any], generate: Callable[[GenerationRequest, str | None], Any],
                max_images: int) -> Any:
    """Every line of the script's text generated, in order, as one answer (server.outcome.Generated): every
    line's images, all_prompts and infotexts (one for a line that made none); all_seeds, all_negative_prompts
    and all_subseeds the script's own [seed], [negative prompt], [-1], as the WebUI's Processed(p, ...)."""
    lines, seed = prompt_lines(base, args)
    total = sum(request.total_images for request, _ in lines)
    if total > max_images:
        raise UsageError(f"script_args: the lines make {total} images, over this server's limit of {max_images} "
                         "per request")
    done = merged([generate(request, model) for request, model in lines])
    info = {**done.info, "seed": seed, "subseed": -1, "negative_prompt": base.negative_prompt,
            "all_seeds": [seed], "all_negative_prompts": [base.negative_prompt], "all_subseeds": [-1]}
    # The other keys are the request's too, not its first line's; the script's p never ran, so the WebUI names
    # no model or VAE (p.sd_model_name ... stay None).
    own = {"prompt": info["all_prompts"][0], "steps": base.steps, "cfg_scale": base.cfg_scale,
           "width": base.width, "height": base.height, "batch_size": base.batch_size,
           "subseed_strength": base.subseed_strength}
    info |= {key: value for key, value in own.items() if value is not None}
    info |= dict.fromkeys(("sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash"))
    return replace(done, info=info)


def _upscale_args(args: list[Any], names: list[str]) -> tuple[int, str, float]:
    """(overlap, upscaler name, scale) from sd upscale's script_args."""
    if len(args) < 4:
        raise UsageError("script_args: sd upscale takes [info, overlap, upscaler, scale factor]")
    _, overlap, upscaler, scale = args[:4]
    if isinstance(upscaler, int) and not isinstance(upscaler, bool):
        if not 0 <= upscaler < len(names):
            raise UsageError(f"script_args: upscaler index {upscaler} is not 0 to {len(names) - 1} "
                             "(/sdapi/v1/upscalers)")
        upscaler = names[upscaler]
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise UsageError(f"script_args: overlap {overlap!r} is not a whole number of pixels")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 1 <= scale <= 8:
        raise UsageError(f"script_args: scale factor {scale!r} is not 1 to 8")
    return overlap, str(upscaler), float(scale)


def merged(results: list[Any]) -> Any:
    """Several server.outcome.Generated as one answer: the first's model and request, every image in order, and
    every line's lists joined (all_prompts: the images it asked for; infotexts: those it made, or image 0's as
    asked), as the WebUI's script joins each line's all_prompts and infotexts."""
    from sdcli.server.outcome import Generated

    items = [replace(item, index=n) for n, item in enumerate(i for r in results for i in r.items)]
    info = {key: [value for r in results for value in r.info[key]] for key in results[0].info}
    return Generated(results[0].plan, results[0].model, results[0].request, items, results[0].job_timestamp, info)


def run_sd_upscale(engine: Any, base: GenerationRequest, args: list[Any], generate: Generate,
                   max_pixels: int) -> Any:
    """The input upscaled, tiled, each tile img2img'd, blended back: a Generated with one image per n_iter, its
    infotext the first tile's with the script's keys, and the info lists of the last batch of tiles (the WebUI
    script's p after its last process_images: batch_size images from that batch's seed)."""
    from PIL import Image

    from sdcli.io.images import open_image
    from sdcli.io.tiles import combine_tiles, split_tiles
    from sdcli.job.upscale import UpscaleOptions, check_upscaler
    from sdcli.models.upscalers import PIL_FILTERS

    names = list(PIL_FILTERS) + [e.name for e in engine.folders.library().entries("upscaler")]
    overlap, upscaler_name, scale = _upscale_args(args, names)
    assert base.init is not None and base.width and base.height
    width, height = base.width, base.height
    if overlap >= min(width, height):
        raise UsageError(f"script_args: overlap {overlap} must be less than the tile size {width}x{height}")
    image = open_image(Path(base.init.image), "init_images[0]")
    if upscaler_name not in ("None", "none"):
        options = UpscaleOptions(upscaler_name, scale)
        try:
            ref = check_upscaler(options, engine.folders.library(), names_only=True)
        except UsageError as exc:
            raise UsageError(f"script_args: upscaler {upscaler_name!r}: {str(exc).partition(': ')[2]}") from None
        target = (int(image.width * scale) // 8 * 8, int(image.height * scale) // 8 * 8)
        if target[0] * target[1] > max_pixels:
            raise UsageError(f"script_args: the upscaled image would be {target[0]}x{target[1]}, over this "
                             f"server's limit of {max_pixels} pixels")
        with engine._slot():
            upscaler = engine.cache.hires_upscaler(ref, engine.folders, engine.plan)
            image = upscaler.upscale(image, scale)
    if image.width < width or image.height < height:
        raise UsageError(f"script_args: the upscaled image ({image.width}x{image.height}) is smaller than a tile "
                         f"(width x height {width}x{height})")
    grid = split_tiles(image, width, height, overlap)
    seed = base.seed if base.seed is not None else random.randrange(MAX_SEED)
    tile_request = replace(base, batch_size=1, count=1)
    keys = {"SD upscale overlap": overlap, "SD upscale upscaler": upscaler_name}
    items: list[Any] = []
    first: Any = None
    done: Any = None
    with tempfile.TemporaryDirectory(prefix="sdcli-serve-") as folder:
        for n in range(base.count):
            images = []
            for k, tile in enumerate(grid.images()):
                path = Path(folder) / f"tile-{n}-{k}.png"
                tile.save(path)
                index = k // base.batch_size + k % base.batch_size  # the WebUI script's seed per tile
                request = replace(tile_request, seed=(seed + n + index) % (MAX_SEED + 1),
                                  init=replace(base.init, image=str(path), resize="just"))
                done = generate(request)
                first = first or done
                images.append(done.items[0].image if done.items else Image.new("RGB", (width, height)))
            combined = combine_tiles(grid, images)
            infotext = with_params(first.info["infotexts"][0], keys)  # a first tile that made none: as asked
            items.append(replace(first.items[0] if first.items else _blank_item(seed, (width, height)),
                                 image=combined, index=n, seed=(seed + n) % (MAX_SEED + 1), width=combined.width,
                                 height=combined.height, infotext=infotext))
    last = replace(done.request, seed=(done.request.seed - k % base.batch_size) % (MAX_SEED + 1),
                   batch_size=base.batch_size)  # the last batch's first tile
    return replace(first, items=items, info={**asked(last), "infotexts": [item.infotext for item in items]})


def info_of(items: list[Any], styles: list[str] | None) -> dict[str, Any]:
    """The `info` keys that follow each image rather than the request (a script's lines have their own prompts):
    all_prompts / all_negative_prompts from each image's infotext, and the styles the request named."""
    from sdcli.io.metadata import parse_infotext

    parsed = [parse_infotext(item.infotext) for item in items]
    return {"all_prompts": [p[0] for p in parsed], "all_negative_prompts": [p[1] for p in parsed],
            "styles": list(styles or [])}


# The WebUI's X/Y/Z plot axes in its dropdown order (scripts/xyz_grid.py axis_options; its script_args give an
# axis as an index into this list filtered to the tab): (label, the one tab it shows on, or None: both).
XYZ_AXES: tuple[tuple[str, str | None], ...] = (
    ("Nothing", None), ("Seed", None), ("Var. seed", None), ("Var. strength", None), ("Steps", None),
    ("Hires steps", "txt2img"), ("CFG Scale", None), ("Image CFG Scale", "img2img"), ("Prompt S/R", None),
    ("Prompt order", None), ("Sampler", "txt2img"), ("Hires sampler", "txt2img"), ("Sampler", "img2img"),
    ("Checkpoint name", None), ("Negative Guidance minimum sigma", None), ("Sigma Churn", None), ("Sigma min", None),
    ("Sigma max", None), ("Sigma noise", None), ("Schedule type", None), ("Schedule min sigma", None),
    ("Schedule max sigma", None), ("Schedule rho", None), ("Eta", None), ("Clip skip", None), ("Denoising", None),
    ("Initial noise multiplier", None), ("Extra noise", None), ("Hires upscaler", "txt2img"),
    ("Cond. Image Mask Weight", "img2img"), ("VAE", None), ("Styles", None), ("UniPC Order", None),
    ("Face restore", None), ("Token merging ratio", None), ("Token merging ratio high-res", None),
    ("Always discard next-to-last sigma", None), ("SGM noise multiplier", None), ("Refiner checkpoint", None),
    ("Refiner switch at", None), ("RNG source", None),
)


def xyz_labels(tab: str) -> list[str]:
    """The axis labels of one tab, in the order the WebUI's script_args index them."""
    return [label for label, only in XYZ_AXES if only in (None, tab)]


XyzOptions = tuple[str | None, str | None, str | None]


def _xyz_options(args: list[Any], tab: str) -> tuple[XyzOptions, bool, bool, bool, bool]:
    """(the three "Label: values" axis options, draw legend, include lone images, include sub grids, keep -1 seeds)
    from the X/Y/Z plot's script_args; an axis type is an index into the tab's list (or its label)."""
    if len(args) < 9:
        raise UsageError("script_args: x/y/z plot takes [x type, x values, x dropdown, y type, ..., z dropdown, "
                         "draw legend, include lone images, include sub grids, keep -1 for seeds, ...]")
    labels = xyz_labels(tab)
    options: list[str | None] = []
    for n, axis in enumerate("xyz"):
        kind, text, dropdown = args[3 * n:3 * n + 3]
        if isinstance(kind, int) and not isinstance(kind, bool):
            if not 0 <= kind < len(labels):
                raise UsageError(f"script_args: {axis} type {kind} is not 0 to {len(labels) - 1}")
            kind = labels[kind]
        if not isinstance(kind, str):
            raise UsageError(f"script_args: {axis} type {kind!r} is not an axis index or name")
        if not text and isinstance(dropdown, list) and dropdown:  # one CSV row, as the WebUI's list_to_csv_string
            row = io.StringIO()
            csv.writer(row).writerow([str(v) for v in dropdown])
            text = row.getvalue().strip()
        options.append(None if kind == "Nothing" else f"{kind}: {text or ''}")
    flags = [bool(a) for a in args[9:13]] + [True, False, False, False][len(args[9:13]):]
    return (options[0], options[1], options[2]), flags[0], flags[1], flags[2], flags[3]


def run_xyz(engine: Any, base: GenerationRequest, args: list[Any], generate: Callable[[GenerationRequest, str | None],
            Any], tab: str, max_images: int) -> Any:
    """Every cell through the server, then sdcli xyz's grid: a Generated whose images are the grid (the Z grids
    after it with "include sub grids", the cells with "include lone images"), as the WebUI's script answers."""
    from sdcli.batch.plotgrid import cell_grid, combined_grid, grid_infotext
    from sdcli.batch.xyz import plan_plot
    from sdcli.batch.xyz_order import run_order

    options, legend, lone, sub, keep = _xyz_options(args, tab)
    try:
        plot = plan_plot(base, options, None, keep_random_seeds=keep, check_model=lambda spec: engine.find(spec))
    except UsageError as exc:
        text = str(exc)
        for axis in "xyz":
            text = text.replace(f"--{axis}", f"script_args {axis}")
        raise UsageError(text if text.startswith("script_args") else f"script_args: {text}") from None
    if plot.vaes:
        raise UsageError("script_args: the VAE axis is not run by the server; use sdcli xyz")
    if len(plot.lines) > max_images:
        raise UsageError(f"script_args: the plot has {len(plot.lines)} cells, over this server's limit of "
                         f"{max_images} images per request")
    results: list[Any] = [None] * len(plot.lines)
    with engine.keeping_current():  # a Checkpoint name axis switches the model cell by cell
        for n in run_order(plot):  # the WebUI's order: a Checkpoint name axis outermost
            results[n] = generate(plot.lines[n].request, plot.lines[n].model)
    made = [r.items[0] if r.items else None for r in results]  # None: a cell an /interrupt kept from starting
    first = next((item for item in made if item is not None), None)
    x, y, z = plot.axes
    nx, ny, nz = plot.shape
    size = first.image.size if first is not None else (base.width or 512, base.height or 512)
    with tempfile.TemporaryDirectory(prefix="sdcli-serve-") as folder:
        paths: list[Path | None] = [None if item is None else Path(folder) / f"cell-{n}.png"
                                    for n, item in enumerate(made)]  # None: drawn black
        for item, path in zip(made, paths, strict=True):
            if item is not None and path is not None:
                item.image.save(path)
        grids = [cell_grid(paths[iz * nx * ny:(iz + 1) * nx * ny], nx, size, x.labels, y.labels, legend)
                 for iz in range(nz)]
        for iz, grid in enumerate(grids):
            grid.save(Path(folder) / f"grid-{iz}.png")
        main = grids[0] if nz == 1 else combined_grid([Path(folder) / f"grid-{iz}.png" for iz in range(nz)],
                                                      z.labels, legend)
    template = first or _blank_item(results[0].request.seed, size)
    shown = [main] + (grids if sub else [])  # with one Z value too: the main grid, then that Z grid
    # Each grid's infotext: its first cell's (0, 0, z) with the plot's keys (Z keys on the main grid only);
    # None where that cell made nothing, as the WebUI's grid_infotext of a cell that did not run.
    corners = [made[plot.cell(0, 0, iz)] for iz in range(nz)]
    texts = [grid_infotext(corners[0].infotext, plot, combined=True) if corners[0] else None]
    texts += [grid_infotext(c.infotext, plot, combined=False) if c else None for c in corners] if len(shown) > 1 else []
    items = [replace(template, image=image, width=image.width, height=image.height, infotext=text or "")
             for image, text in zip(shown, texts, strict=True)]
    items += [item or _blank_item(template.seed, size) for item in made] if lone else []
    return replace(results[0], items=[replace(item, index=n) for n, item in enumerate(items)],
                   info=_xyz_info(results, made, texts, nx * ny if sub else 0))


def _blank_item(seed: int, size: tuple[int, int]) -> Any:
    """A cell an /interrupt kept from starting: black, no infotext (the WebUI's blank cell)."""
    from PIL import Image

    from sdcli.job.generate import GeneratedImage

    return GeneratedImage(image=Image.new("RGB", size), index=0, seed=seed, subseed=None, width=size[0],
                          height=size[1], params={}, infotext="")


def _xyz_info(results: list[Any], made: list[Any], grids: list[str | None], z_every: int) -> dict[str, Any]:
    """The WebUI X/Y/Z plot's info lists: each cell's prompt, seed and infotext (null for a cell an /interrupt
    kept from starting), the grids' infotexts first (and, with sub grids, each Z grid's first cell's prompt and
    seed); the first cell's negative prompts and subseeds."""
    prompts = [r.request.prompt if item is not None else None for r, item in zip(results, made, strict=True)]
    seeds = [item.seed if item is not None else None for item in made]
    starts = range(0, len(made), z_every) if z_every else range(0)
    return {"all_prompts": [prompts[n] for n in starts] + prompts, "all_seeds": [seeds[n] for n in starts] + seeds,
            "infotexts": grids + [item.infotext if item else None for item in made],
            "all_negative_prompts": results[0].info["all_negative_prompts"],
            "all_subseeds": results[0].info["all_subseeds"], "index_of_first_image": 1}
