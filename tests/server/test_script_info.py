"""The WebUI API's answers to its selectable scripts, key for key: the X/Y/Z grid's infotext (its first cell's with
the plot's keys), the X/Y/Z plot's order of cells (a Checkpoint name axis outermost), SD upscale's info lists
(the last batch of tiles), each checked against tests/reference/webui_scripts_ref.py."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sdcli.io.metadata import parse_infotext
from sdcli.server.scripts import xyz_labels
from tests.reference import webui_interrupt_ref as interrupt_ref
from tests.reference import webui_scripts_ref as ref
from tests.server.conftest import b64png, decode, interrupt_at

TXT = {"prompt": "oil", "negative_prompt": "fog", "seed": 7, "steps": 2, "width": 32, "height": 32,
       "sampler_name": "Euler a"}
LABELS = xyz_labels("txt2img")


def post(client, path="/sdapi/v1/txt2img", **payload):
    response = client.post(path, json={**TXT, **payload})
    assert response.status_code == 200, response.text
    return response.json()["images"], json.loads(response.json()["info"])


def xyz(x, y=("Nothing", "", []), z=("Nothing", "", []), lone=True, sub=False, keep=False):
    """script_args: each axis (label, values text, dropdown values)."""
    axes = [item for label, text, dropdown in (x, y, z) for item in (LABELS.index(label), text, dropdown)]
    return {"script_name": "x/y/z plot", "script_args": [*axes, True, lone, sub, keep, False, False, 0, False]}


def with_keys(cell: str, keys: dict) -> tuple[str, str, list[tuple[str, str]]]:
    """The cell's infotext with `keys` among its extra params (before Version), as (prompt, negative, pairs)."""
    prompt, negative, params = parse_infotext(cell)
    version = params.pop("Version")
    return prompt, negative, [*params.items(), *((k, str(v)) for k, v in keys.items()), ("Version", version)]


def pairs(infotext: str) -> tuple[str, str, list[tuple[str, str]]]:
    prompt, negative, params = parse_infotext(infotext)
    return prompt, negative, list(params.items())


def test_xyz_grid_infotext_is_the_first_cells_with_the_plots_keys(client, single_thread):
    seed_axis = ("Seed", "-1, 9", [])
    sampler_axis = ("Sampler", "", ["Euler", "DPM++ 2M"])  # a dropdown: its values text is one CSV row
    images, info = post(client, **xyz(seed_axis, sampler_axis))
    cells = info["infotexts"][1:]
    fixed = int(parse_infotext(cells[0])[2]["Seed"])  # "-1" fixed once for the plot
    assert [parse_infotext(c)[2]["Sampler"] for c in cells] == ["Euler", "Euler", "DPM++ 2M", "DPM++ 2M"]
    axes = [("Seed", "-1, 9", [fixed, 9]), ("Sampler", "Euler,DPM++ 2M", ["Euler", "DPM++ 2M"]), ("Nothing", "", [])]
    keys = ref.grid_keys(axes, keep_random_seeds=False, main=True)
    assert keys["Fixed X Values"] == f"{fixed}, 9" and "Y Values" in keys
    assert pairs(info["infotexts"][0]) == with_keys(cells[0], keys)
    assert 'X Values: "-1, 9", Fixed X Values: "' in info["infotexts"][0]  # quoted as the WebUI's quote()
    assert decode(images[0]).info["parameters"] == info["infotexts"][0]  # the grid PNG carries it too
    assert "Script" not in parse_infotext(cells[0])[2]  # a cell's own infotext has no plot keys

    _, kept = post(client, **xyz(seed_axis, keep=True))  # "Keep -1 for seeds": no fixed values written
    assert "Fixed X Values" not in parse_infotext(kept["infotexts"][0])[2]


def test_xyz_sub_grids_have_no_z_keys(client, single_thread):
    x, z = ("Steps", "2, 3", []), ("CFG Scale", "5, 7", [])
    _, info = post(client, **xyz(x, z=z, lone=False, sub=True))
    main, first_z, second_z, *cells = info["infotexts"]
    axes = [("Steps", "2, 3", [2, 3]), ("Nothing", "", []), ("CFG Scale", "5, 7", [5.0, 7.0])]
    assert pairs(main) == with_keys(cells[0], ref.grid_keys(axes, False, main=True))
    assert pairs(first_z) == with_keys(cells[0], ref.grid_keys(axes, False, main=False))
    assert pairs(second_z) == with_keys(cells[2], ref.grid_keys(axes, False, main=False))  # cell (0, 0, 1)
    assert "Z Type: CFG Scale" in main and "Z Type" not in second_z

    # One Z value: "include sub grids" still answers the main grid and then its one Z grid, as the WebUI's.
    images, one = post(client, **xyz(x, lone=False, sub=True))
    expected = interrupt_ref.xyz_plot([interrupt_ref.Job(("oil",), ("fog",), (7,), (None,), 1)] * 2, (2, 1, 1),
                                      sub=True)
    assert len(images) == len(expected.images) == 2  # the main grid of one Z grid with no title: that grid
    assert np.array_equal(np.asarray(decode(images[0])), np.asarray(decode(images[1])))
    assert one["all_seeds"] == expected.all_seeds == [7, 7, 7] and len(one["infotexts"]) == 4


def test_xyz_checkpoint_axis_runs_outermost_so_an_interrupt_blanks_the_webuis_cells(client, engine, monkeypatch,
                                                                                    single_thread):
    model = engine.models[0]
    checkpoint = ("Checkpoint name", f"{model.ref.name}, {model.hash}", [])  # one model by two names: no load
    cfg = ("CFG Scale", "5, 7", [])
    order = ref.cell_order(("Checkpoint name", "CFG Scale", "Nothing"), (2, 2, 1))
    assert order == [0, 2, 1, 3]  # x outermost: (x0, y0), (x0, y1), (x1, y0), (x1, y1)
    full, _ = post(client, **xyz(checkpoint, cfg))
    calls = interrupt_at(engine, monkeypatch, batch=0, step=2, nth=2)  # in the second cell run
    images, info = post(client, **xyz(checkpoint, cfg))
    assert calls == [(0, 1), (0, 2), (0, 1), (0, 2)]
    cells = [np.asarray(decode(data).convert("RGB")) for data in images[1:]]
    blank = sorted(order[2:])  # the cells after the second in the WebUI's order
    assert [n for n, cell in enumerate(cells) if not cell.any()] == blank == [1, 3]
    assert np.array_equal(cells[0], np.asarray(decode(full[1]).convert("RGB")))  # the first ran whole
    assert [s is None for s in info["all_seeds"]] == [n in blank for n in range(4)]


def test_sd_upscale_lists_are_the_last_batch_of_tiles(client, single_thread):
    x = np.linspace(0, 255, 32, dtype=np.uint8)
    source = Image.fromarray(np.stack(np.broadcast_arrays(x[None, :], x[:, None], 255 - x[None, :]), axis=2))
    payload = {"init_images": [b64png(source)], "denoising_strength": 0.5, "script_name": "sd upscale",
               "script_args": ["", 0, "Lanczos", 2.0], "n_iter": 2, "batch_size": 2}  # 4 tiles in 2 batches, twice
    images, info = post(client, "/sdapi/v1/img2img", **payload)
    _, all_seeds = ref.sd_upscale_seeds(7, count=2, tiles=4, batch_size=2)
    assert all_seeds == [9, 10] and len(images) == 2
    expected = interrupt_ref.process_images(interrupt_ref.Job(("oil",) * 2, ("fog",) * 2, (9, 10), (None,) * 2, 2))
    assert info["all_seeds"] == expected.all_seeds == all_seeds
    assert (info["all_prompts"], info["all_negative_prompts"]) == (expected.all_prompts, expected.all_negative_prompts)
    assert info["all_subseeds"] == expected.all_subseeds and info["seed"] == 7
    first = info["infotexts"][0]
    assert info["infotexts"] == [first, first]  # the first tile's, for each upscaled image
    params = list(parse_infotext(first)[2])  # the script's keys among the extra params, before Version
    assert params[-3:] == ["SD upscale overlap", "SD upscale upscaler", "Version"]
