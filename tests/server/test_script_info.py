"""The WebUI API's answers to its selectable scripts, key for key: the X/Y/Z grid's infotext (its first cell's with
the plot's keys), the X/Y/Z plot's order of cells (a Checkpoint name axis outermost), SD upscale's info lists
(the last batch of tiles), each checked against tests/reference/webui_scripts_ref.py."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sdcli.io.metadata import parse_infotext
from tests.reference import webui_interrupt_ref as interrupt_ref
from tests.reference import webui_scripts_ref as ref
from tests.server.conftest import b64png

TXT = {"prompt": "oil", "negative_prompt": "fog", "seed": 7, "steps": 2, "width": 32, "height": 32,
       "sampler_name": "Euler a"}


def post(client, path="/sdapi/v1/txt2img", **payload):
    response = client.post(path, json={**TXT, **payload})
    assert response.status_code == 200, response.text
    return response.json()["images"], json.loads(response.json()["info"])


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
