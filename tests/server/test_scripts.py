"""The WebUI's selectable scripts sdcli runs: "prompts from file or textbox" and "sd upscale" (the WebUI API
test's own request), each job an ordinary server generation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sdcli.io.metadata import parse_infotext
from tests.reference import webui_scripts_ref as ref
from tests.server.conftest import b64png, decode

TXT = {"prompt": "oil", "seed": 7, "steps": 2, "width": 32, "height": 32, "sampler_name": "Euler a"}
PROMPTS = "prompts from file or textbox"


def generate(client, path="/sdapi/v1/txt2img", **payload):
    response = client.post(path, json={**TXT, **payload})
    assert response.status_code == 200, response.text
    body = response.json()
    return body, json.loads(body["info"])


def rgb(data):
    return np.asarray(decode(data).convert("RGB"))


def test_prompts_from_file_lines_run_as_the_webui_script(api, single_thread):
    text = 'a cat\n--prompt "a dog" --steps 3 --seed 5 --negative_prompt "rain"\n\n'
    body, info = generate(api, script_name="Prompts from file or textbox", script_args=[False, False, "start", text])
    lines = [parse_infotext(t) for t in info["infotexts"]]
    assert [(p, n, params["Seed"], params["Steps"]) for p, n, params in lines] == [
        ("a cat oil", "", "7", "2"), ("a dog oil", "rain", "5", "3")]
    assert info["all_prompts"] == ["a cat oil", "a dog oil"]
    # The WebUI script's own Processed(p, ...): the request's negative prompt, the script's seed, subseed -1.
    assert (info["all_negative_prompts"], info["all_seeds"], info["all_subseeds"]) == ([""], [7], [-1])
    assert (info["negative_prompt"], info["seed"], info["subseed"]) == ("", 7, -1)
    # The rest is the request's as well, not the first line's; the script's own p loaded no model.
    _, first_line = generate(api, script_name=PROMPTS, script_args=[False, False, "start", "--prompt a --steps 3"])
    assert (first_line["steps"], first_line["prompt"], first_line["sd_model_name"]) == (2, "a oil", None)
    alone, _ = generate(api, prompt="a cat oil")
    assert np.array_equal(rgb(body["images"][0]), rgb(alone["images"][0]))


def test_prompts_from_file_seeds_and_position(api):
    def seeds(info):
        return [int(parse_infotext(t)[2]["Seed"]) for t in info["infotexts"]]

    _, info = generate(api, script_name=PROMPTS, script_args=[True, False, "end", "a\nb"], batch_size=2)
    assert [parse_infotext(t)[0] for t in info["infotexts"]] == ["oil a", "oil a", "oil b", "oil b"]
    assert seeds(info) == [7, 8, 9, 10]  # "iterate seed every line": the next line starts after this one's
    assert info["all_seeds"] == [11]  # the script's seed after its last line, as the WebUI answers
    # The seed moves on by the request's batch size x n_iter, not by the images a line sets (the WebUI's p.seed).
    _, lines = generate(api, script_name=PROMPTS, script_args=[True, False, "start", "--prompt a --n_iter 2\nb"])
    starts, last = ref.prompt_seeds(7, [None, None], iterate=True, per_request=1)
    assert seeds(lines) == [starts[0], starts[0] + 1, starts[1]] == [7, 8, 8] and lines["all_seeds"] == [last] == [9]
    _, same = generate(api, script_name=PROMPTS, script_args=[False, True, "a\nb"], seed=-1)  # the older args
    assert seeds(same)[0] == seeds(same)[1] == same["all_seeds"][0] != -1  # "same random seed for all lines"
    _, each = generate(api, script_name=PROMPTS, script_args=[False, False, "a\nb"], seed=11)
    assert seeds(each) == [11, 11] and each["all_seeds"] == [11]
    _, unfixed = generate(api, script_name=PROMPTS, script_args=[False, False, "a\nb"], seed=-1)
    assert unfixed["all_seeds"] == [-1] and unfixed["seed"] == -1  # the WebUI leaves p.seed at -1


@pytest.mark.parametrize("text, detail", [
    ("--init_image /etc/passwd --prompt x", "script_args: line 1: init_image names a file"),
    ("a\n--nonsense 3", "script_args: line 2: unknown key 'nonsense'"),
    ("a\nb\nc\nd\ne", "script_args: the lines make 5 images, over this server's limit of 4"),
    ("--sd_model nope --prompt x", "sd_model_checkpoint: model 'nope' is not served here"),
])
def test_prompts_from_file_refusals(api, text, detail):
    response = api.post("/sdapi/v1/txt2img", json={**TXT, "script_name": PROMPTS, "script_args": [False, False, text]})
    assert response.status_code == 422 and detail in response.json()["detail"], response.text


def test_sd_upscale_the_webui_api_test_request(api, single_thread):
    """test/test_img2img.py test_img2img_sd_upscale_performed's script, on a 32 px input with 32 px tiles."""
    from sdcli.models.upscalers import ready, resolve_upscaler

    x = np.linspace(0, 255, 32, dtype=np.uint8)
    source = Image.fromarray(np.stack(np.broadcast_arrays(x[None, :], x[:, None], 255 - x[None, :]), axis=2))
    payload = {"init_images": [b64png(source)], "denoising_strength": 0.5, "script_name": "sd upscale",
               "script_args": ["", 8, "Lanczos", 2.0]}
    body, info = generate(api, "/sdapi/v1/img2img", **payload)
    [image] = [decode(x) for x in body["images"]]
    assert image.size == (64, 64)
    _, _, params = parse_infotext(info["infotexts"][0])
    assert (params["SD upscale overlap"], params["SD upscale upscaler"], params["Size"]) == ("8", "Lanczos", "32x32")
    # The top-left 16 px come from the first tile alone: an img2img of the upscaled input's corner, seed 7.
    upscaled = ready(resolve_upscaler("Lanczos", "--upscaler"), "--upscaler").upscale(source, 2.0)
    tile, _ = generate(api, "/sdapi/v1/img2img", init_images=[b64png(upscaled.crop((0, 0, 32, 32)))],
                       denoising_strength=0.5)
    assert np.array_equal(np.asarray(image.convert("RGB"))[:16, :16], rgb(tile["images"][0])[:16, :16])
    by_index, _ = generate(api, "/sdapi/v1/img2img", **{**payload, "script_args": ["", 8, 0, 2.0]})  # 0: Lanczos
    assert np.array_equal(rgb(by_index["images"][0]), np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("args, detail", [
    (["", 8, "nope", 2.0], "script_args: upscaler 'nope'"),
    (["", 8, 99, 2.0], "script_args: upscaler index 99 is not 0 to"),
    (["", 40, "Lanczos", 2.0], "script_args: overlap 40 must be less than the tile size 32x32"),
    (["", 8, "Lanczos", 4.0], "the upscaled image would be 128x128, over this server's limit of 4096 pixels"),
    (["", 8], "script_args: sd upscale takes [info, overlap, upscaler, scale factor]"),
])
def test_sd_upscale_refusals(api, args, detail):
    payload = {**TXT, "init_images": [b64png(Image.new("RGB", (32, 32)))], "script_name": "SD upscale",
               "script_args": args}
    response = api.post("/sdapi/v1/img2img", json=payload)
    assert response.status_code == 422 and detail in response.json()["detail"], response.text


def test_scripts_lists_what_runs(api):
    listed = api.get("/sdapi/v1/scripts").json()
    assert listed["txt2img"] == [PROMPTS, "x/y/z plot", "controlnet"] and "sd upscale" in listed["img2img"]
    refused = api.post("/sdapi/v1/txt2img", json={**TXT, "script_name": "sd upscale"})
    assert refused.status_code == 422 and "works with img2img only" in refused.json()["detail"]


def xyz_args(x=(0, ""), y=(0, ""), z=(0, ""), legend=True, lone=False, sub=False, keep=False):
    return [x[0], x[1], [], y[0], y[1], [], z[0], z[1], [], legend, lone, sub, keep, False, False, False, 0, False]


def test_xyz_plot_cells_and_grid(api, single_thread):
    from sdcli.server.scripts import xyz_labels

    steps, cfg = xyz_labels("txt2img").index("Steps"), xyz_labels("txt2img").index("CFG Scale")
    assert (steps, cfg) == (4, 6)  # the WebUI's dropdown indices
    body, info = generate(api, script_name="X/Y/Z plot", script_args=xyz_args((4, "2, 3"), (6, "5,7"), lone=True))
    grid, *cells = [decode(x) for x in body["images"]]
    assert len(cells) == 4 and grid.width > 64 and grid.height > 64
    params = [parse_infotext(t)[2] for t in info["infotexts"][1:]]
    assert [(p["Steps"], p["CFG scale"], p["Seed"]) for p in params] == [
        ("2", "5", "7"), ("3", "5", "7"), ("2", "7", "7"), ("3", "7", "7")]
    alone, _ = generate(api, steps=3, cfg_scale=7)
    assert np.array_equal(rgb(body["images"][4]), rgb(alone["images"][0]))
    only_grid, _ = generate(api, script_name="x/y/z plot", script_args=xyz_args(("Sampler", "Euler, DDIM")))
    assert len(only_grid["images"]) == 1  # the WebUI's default: the grid alone


@pytest.mark.parametrize("args, detail", [
    (xyz_args(("Face restore", "True")), "script_args x: the WebUI axis 'Face restore' is not supported"),
    (xyz_args((4, "1-5")), "the plot has 5 cells, over this server's limit of 4"),
    (xyz_args((99, "1")), "script_args: x type 99 is not 0 to"),
    (xyz_args((4, "0, 2")), "script_args x: Steps 0"),
    ([4, "2"], "script_args: x/y/z plot takes"),
])
def test_xyz_plot_refusals(api, args, detail):
    response = api.post("/sdapi/v1/txt2img", json={**TXT, "script_name": "x/y/z plot", "script_args": args})
    assert response.status_code == 422 and detail in response.json()["detail"], response.text
